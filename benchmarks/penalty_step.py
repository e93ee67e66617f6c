"""What a gradient penalty costs: one D step of the DCGAN critic (non-saturating loss on a real and a
fake batch, Adam) with and without R1 (or WGAN-GP) on the reals, minigan (tangents by hand) against
torch (double backward, create_graph=True), same run, float32.

    python benchmarks/penalty_step.py [--workload dcgan32|dcgan64|mlp] [--penalty r1|wgan_gp]
                                      [--backend numpy|cupy] [--batch B] [--repeats 7]

Prints the median ms of each step, each library's penalised/plain ratio (the issue's target: at most
3x) and minigan/torch for both steps.  The four steps run interleaved, warm-up excluded.  On the CPU,
state how OpenBLAS was pinned (see benchmarks/README.md: run with
`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` for numpy's full speed).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

import minigan
from minigan.gan import r1_penalty, wgan_gp_penalty

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conditions import LoadMeter, header, set_threads  # noqa: E402
from gan_step import build, set_tf32, syncs  # noqa: E402  (also puts tests/ on the path for torch_twin)


def minigan_d_step(D, fake, real, penalty, gamma):
    opt = minigan.Adam(2e-4, (0.0, 0.99))
    objective = minigan.gan_objective("non_saturating")
    rng = np.random.default_rng(0)

    def step():
        logit_r, tape_r = D.forward(real, train=True)
        logit_f, tape_f = D.forward(fake, train=True)
        _, dr, df = objective.d_loss(logit_r, logit_f)
        _, g = D.backward(dr, tape_r, input_grad=False, free_tape=penalty != "r1")
        _, g = D.backward(df, tape_f, grads=g, input_grad=False, free_tape=True)
        if penalty == "r1":
            _, gp = r1_penalty(D, real, gamma, tape=tape_r)      # the reals' forward, as torch reuses it
        elif penalty == "wgan_gp":
            _, gp = wgan_gp_penalty(D, real, fake, gamma, rng=rng)
        else:
            gp = {}
        for k, v in gp.items():
            g[k] += v
        opt.step(D.parameters(), g)
    return step


def torch_d_step(D, fake, real, penalty, gamma, device):
    import torch
    import torch.nn.functional as F
    from torch_twin import torch_net_like

    tD = torch_net_like(D).to(device)
    treal = torch.from_numpy(minigan.asnumpy(real)).to(device)
    tfake = torch.from_numpy(minigan.asnumpy(fake)).to(device)
    opt = torch.optim.Adam(tD.parameters(), 2e-4, betas=(0.0, 0.99))

    def step():
        opt.zero_grad(set_to_none=True)
        x = treal.requires_grad_(penalty == "r1")
        logit_r, logit_f = tD(x), tD(tfake)
        loss = F.softplus(-logit_r).mean() + F.softplus(logit_f).mean()
        if penalty == "r1":        # StyleGAN2's R1: the same forward on the reals, double backward
            g, = torch.autograd.grad(logit_r.sum(), x, create_graph=True)
            loss = loss + gamma / 2 * g.pow(2).reshape(len(g), -1).sum(1).mean()
        elif penalty == "wgan_gp":
            alpha = torch.rand(len(treal), *([1] * (treal.ndim - 1)), device=device)
            x_hat = (treal + alpha * (tfake - treal)).requires_grad_(True)
            g, = torch.autograd.grad(tD(x_hat).sum(), x_hat, create_graph=True)
            loss = loss + gamma * ((g.reshape(len(g), -1).norm(2, dim=1) - 1) ** 2).mean()
        loss.backward()
        opt.step()
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="dcgan32")
    ap.add_argument("--penalty", default="r1", choices=["r1", "wgan_gp"])
    ap.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    ap.add_argument("--batch", type=int)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps-per-repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, help="threads for torch and numpy's BLAS alike (default: the CPU count)")
    args = ap.parse_args()
    if args.backend == "cupy":
        set_tf32(False)
    threads = set_threads(args.threads)
    meter = LoadMeter()
    G, D, z, real, batch = build(args.workload, args.backend, args.batch)
    fake = G(z)                                   # a fixed fake batch: the D step alone is timed
    device = "cuda" if args.backend == "cupy" else "cpu"
    D_plain = minigan.Sequential(*D.layers, seed=1, init="dcgan").to(args.backend)
    D_plain.load_state_dict(D.state_dict())
    fns = {("minigan", "plain"): minigan_d_step(D_plain, fake, real, None, 10.0),
           ("minigan", args.penalty): minigan_d_step(D, fake, real, args.penalty, 10.0),
           ("torch", "plain"): torch_d_step(D, fake, real, None, 10.0, device),
           ("torch", args.penalty): torch_d_step(D, fake, real, args.penalty, 10.0, device)}
    sync_m, sync_t = syncs(args.backend)
    sync = (lambda: (sync_m(), sync_t()))
    for fn in fns.values():
        fn()
        fn()
    sync()
    times = {k: [] for k in fns}
    for r in range(args.repeats):
        for k, fn in (list(fns.items()) if r % 2 == 0 else list(fns.items())[::-1]):      # ABBA
            t0 = time.perf_counter()
            for _ in range(args.steps_per_repeat):
                fn()
            sync()
            times[k].append((time.perf_counter() - t0) * 1e3 / args.steps_per_repeat)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(header(f"{args.workload} D step, batch {batch}, float32, median of {args.repeats} x "
                 f"{args.steps_per_repeat} steps, the four steps ABBA", args.backend, threads, meter))
    for lib in ("minigan", "torch"):
        p, q = med[(lib, "plain")], med[(lib, args.penalty)]
        print(f"  {lib:8} plain {p:8.1f} ms   with {args.penalty} {q:8.1f} ms   {args.penalty}/plain {q / p:.2f}x")
    print(f"  minigan/torch: plain {med[('minigan', 'plain')] / med[('torch', 'plain')]:.2f}   "
          f"with {args.penalty} {med[('minigan', args.penalty)] / med[('torch', args.penalty)]:.2f}")


if __name__ == "__main__":
    main()
