"""One GAN training step (design.md: D on a real and a fake batch, G through the updated D,
Adam 2e-4, betas (0.5, 0.999), float32), minigan against the identical PyTorch step, same run.

    python benchmarks/gan_step.py --workload mlp|mixture|dcgan-mnist|dcgan-stacked|resnet-mnist|dcgan32|dcgan64
                                  [--backend numpy|cupy] [--batch B]
                                  [--repeats 7] [--no-memory] [--count-launches] [--tf32]
                                  [--fusion default|on|off]

Timing: the two libraries alternate ABBA (minigan, torch, torch, minigan, ...) so that neither
always runs right after the other (OpenBLAS's spinning workers leak into the next window), warm-up
excluded; each repeat times --steps-per-repeat steps; the median over repeats is reported, with the
ratio minigan/torch.  Both libraries get --threads threads (default: the CPU count), torch's and
numpy's BLAS alike (benchmarks/conditions.py prints every condition).  Torch does only the work the
step needs: no gradient for the images or z, and D's parameters frozen in the G step (as minigan's
backward with param_grads=False).  Memory: each library's step
runs in a fresh subprocess; CPU: the peak RSS during its first three steps above the RSS before
them (activations, gradients, caches and the optimizer state that the steps create), with glibc's
mmap threshold fixed at 128 KiB so that freed blocks leave RSS (see measure_memory); GPU: the
bytes held by cupy's memory pool (it keeps freed blocks, so this is its high-water mark) vs
torch.cuda.max_memory_reserved (the same quantity for torch's caching allocator).
--fusion: minigan's fused layer pairs (minigan/nn/fuse.py; resnet-mnist's blocks are made of them),
as the library has them (on for numpy, off for cupy), on, or off for the layers one by one.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import minigan
from conditions import LoadMeter, header, set_threads

# the torch twin lives with the tests (the oracle) and serves here as the competitor
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def workload(name):
    """(G layers, D layers, z shape without batch, image shape, default batch)."""
    C, CT, BN, L = minigan.Conv2d, minigan.ConvTranspose2d, minigan.BatchNorm2d, minigan.LeakyReLU
    if name == "mlp":
        G = [minigan.Linear(100, 256), L(0.2), minigan.Linear(256, 512), L(0.2), minigan.Linear(512, 1024), L(0.2),
             minigan.Linear(1024, 784), minigan.Tanh()]
        D = [minigan.Linear(784, 512), L(0.2), minigan.Linear(512, 256), L(0.2), minigan.Linear(256, 1)]
        return G, D, (100,), (784,), 64
    if name in ("mixture", "dcgan-mnist", "dcgan-stacked", "resnet-mnist"):   # a preset's nets and batch, built by it
        from minigan.gan.models import PRESETS, recipe_for
        preset = "grid25" if name == "mixture" else name      # (mixture: ring8's nets too)
        r = recipe_for(preset)
        G, D = PRESETS[preset].build(r)
        image = (3 if name == "dcgan-stacked" else 1, 28, 28)               # (stacked MNIST: three digits as RGB)
        return G, D, (r["z_dim"],), (2,) if name == "mixture" else image, r["batch_size"]
    if name in ("dcgan32", "dcgan64"):
        gch, dch, out_ch = ([256, 128, 64], [64, 128, 256], 1) if name == "dcgan32" else ([512, 256, 128, 64], [64, 128, 256, 512], 3)
        G = [CT(100, gch[0], 4, 1, 0, bias=False), BN(gch[0]), minigan.ReLU()]
        for a, b in zip(gch[:-1], gch[1:]):
            G += [CT(a, b, 4, 2, 1, bias=False), BN(b), minigan.ReLU()]
        G += [CT(gch[-1], out_ch, 4, 2, 1, bias=False), minigan.Tanh()]
        D = [C(out_ch, dch[0], 4, 2, 1, bias=False), L(0.2)]
        for a, b in zip(dch[:-1], dch[1:]):
            D += [C(a, b, 4, 2, 1, bias=False), BN(b), L(0.2)]
        D += [C(dch[-1], 1, 4, 1, 0, bias=False)]
        size = 32 if name == "dcgan32" else 64
        return G, D, (100, 1, 1), (out_ch, size, size), 64 if name == "dcgan32" else 128
    raise SystemExit(f"unknown workload {name!r}; choose mlp, mixture, dcgan-mnist, dcgan-stacked, resnet-mnist, "
                     "dcgan32, dcgan64")


def build(name, backend, batch, seed=0):
    g_layers, d_layers, zshape, xshape, default_batch = workload(name)
    batch = batch or default_batch
    G = minigan.Sequential(*g_layers, seed=seed, init="dcgan").to(backend)
    D = minigan.Sequential(*d_layers, seed=seed + 1, init="dcgan").to(backend)
    rng = np.random.default_rng(seed)
    z = minigan.to_backend(rng.standard_normal((batch,) + zshape).astype(np.float32), backend)
    real = minigan.to_backend(rng.uniform(-1, 1, (batch,) + xshape).astype(np.float32), backend)
    return G, D, z, real, batch


def minigan_step_fn(G, D, z, real):
    opt_g, opt_d = minigan.Adam(2e-4, (0.5, 0.999)), minigan.Adam(2e-4, (0.5, 0.999))
    objective = minigan.gan_objective("non_saturating")

    def step():
        fake, g_tape = G.forward(z, train=True)
        logit_r, tape_r = D.forward(real, train=True)
        logit_f, tape_f = D.forward(fake, train=True)
        loss_d, dlogit_r, dlogit_f = objective.d_loss(logit_r, logit_f)
        # free_tape: each cache is released as soon as it is used, as torch frees its graph
        _, gD = D.backward(dlogit_r, tape_r, input_grad=False, free_tape=True)   # no grad for images
        _, gD = D.backward(dlogit_f, tape_f, grads=gD, input_grad=False, free_tape=True)
        opt_d.step(D.parameters(), gD)
        logit_g, tape_g = D.forward(fake, train=True)
        loss_g, dlogit_g = objective.g_loss(logit_g)
        dfake, _ = D.backward(dlogit_g, tape_g, param_grads=False, free_tape=True)
        _, gG = G.backward(dfake, g_tape, input_grad=False, free_tape=True)   # none for z
        opt_g.step(G.parameters(), gG)
    return step


def torch_step_fn(G, D, z, real, device):
    import torch
    import torch.nn.functional as F
    from torch_twin import torch_net_like

    tG, tD = torch_net_like(G).to(device), torch_net_like(D).to(device)
    tz = torch.from_numpy(minigan.asnumpy(z)).to(device)
    treal = torch.from_numpy(minigan.asnumpy(real)).to(device)
    opt_g = torch.optim.Adam(tG.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(tD.parameters(), 2e-4, betas=(0.5, 0.999))

    d_params = list(tD.parameters())

    def step():
        fake = tG(tz)
        logit_r, logit_f = tD(treal), tD(fake.detach())
        loss_d = F.binary_cross_entropy_with_logits(logit_r, torch.ones_like(logit_r)) + \
            F.binary_cross_entropy_with_logits(logit_f, torch.zeros_like(logit_f))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        for p in d_params:                   # D frozen in G's step: no weight gradients for D
            p.requires_grad_(False)
        logit_g = tD(fake)
        loss_g = F.binary_cross_entropy_with_logits(logit_g, torch.ones_like(logit_g))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for p in d_params:
            p.requires_grad_(True)
    return step


def set_tf32(on):
    """Same arithmetic for both: torch's cuDNN convolutions use TF32 by default on Ampere and later
    (torch.backends.cudnn.allow_tf32), cupy's matmul only with CUPY_TF32=1.  Call before any GPU work."""
    import torch
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = bool(on)
    os.environ["CUPY_TF32"] = "1" if on else "0"


def syncs(backend):
    if backend == "cupy":
        import cupy
        import torch
        return (lambda: cupy.cuda.Device().synchronize()), torch.cuda.synchronize
    return (lambda: None), (lambda: None)


def time_both(args):
    G, D, z, real, batch = build(args.workload, args.backend, args.batch)
    device = "cuda" if args.backend == "cupy" else "cpu"
    ours, theirs = minigan_step_fn(G, D, z, real), torch_step_fn(G, D, z, real, device)
    sync_m, sync_t = syncs(args.backend)
    for fn, sync in ((ours, sync_m), (theirs, sync_t)):       # warm-up, excluded
        for _ in range(2):
            fn()
        sync()
    tm, tt = [], []
    for r in range(args.repeats):
        order = ((ours, sync_m, tm), (theirs, sync_t, tt))
        for fn, sync, out in (order if r % 2 == 0 else order[::-1]):        # ABBA
            t0 = time.perf_counter()
            for _ in range(args.steps_per_repeat):
                fn()
            sync()
            out.append((time.perf_counter() - t0) * 1e3 / args.steps_per_repeat)
    return batch, statistics.median(tm), statistics.median(tt)


def count_launches(args):
    """CUDA kernels launched per step by each library, counted with torch.profiler (CUPTI sees
    every kernel of the process, CuPy's included; run on an H100, 2026-12-05), then minigan's most
    launched kernels by name: where its launches go (the breakdown is new since that run)."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    G, D, z, real, _ = build(args.workload, args.backend, args.batch)
    counts = {}
    for name, fn in (("minigan", minigan_step_fn(G, D, z, real)), ("torch", torch_step_fn(G, D, z, real, "cuda"))):
        fn()
        torch.cuda.synchronize()
        import cupy
        cupy.cuda.Device().synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                fn()
            cupy.cuda.Device().synchronize()
            torch.cuda.synchronize()
        events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        copies = [e for e in events if e.name.lower().startswith(("memcpy", "memset"))]
        counts[name] = ((len(events) - len(copies)) / 3, len(copies) / 3)
        if name == "minigan":
            top = launch_table(events, steps=3)
    print(f"CUDA kernels per step: minigan {counts['minigan'][0]:.0f}   torch {counts['torch'][0]:.0f}   "
          f"(memcpy/memset per step: minigan {counts['minigan'][1]:.0f}   torch {counts['torch'][1]:.0f})")
    print(top)


def launch_table(events, steps, rows=15):
    """The most launched kernels among profiler ``events`` (each with .name and, where the profiler
    gives it, .time_range): per step, launches and GPU microseconds, the name cut to 70 characters."""
    import collections
    n, us = collections.Counter(), collections.Counter()
    for e in events:
        n[e.name] += 1
        try:
            us[e.name] += e.time_range.elapsed_us()
        except AttributeError:                       # (a profiler without per-event times: counts only)
            pass
    lines = [f"minigan's most launched kernels ({len(n)} names; per step):", "  launches     us  name"]
    lines += [f"  {c / steps:8.1f} {us[k] / steps:6.0f}  {k[:70]}" for k, c in n.most_common(rows)]
    return "\n".join(lines)


def memory_child(args):
    """Run in a subprocess: build one library's step, report its peak memory growth in bytes.

    One step on a batch of 2 runs first and is thrown away, so one-time costs that are not the
    step's memory (numba compiling or loading its kernels, torch/oneDNN lazy initialisation) stay
    out of the measurement; the measured steps still create the optimizer state."""
    import gc
    warm = build(args.workload, args.backend, 2)[:4]
    (minigan_step_fn(*warm) if args.memory_child == "minigan" else
     torch_step_fn(*warm, "cuda" if args.backend == "cupy" else "cpu"))()
    del warm
    gc.collect()
    G, D, z, real, _ = build(args.workload, args.backend, args.batch)
    fn = minigan_step_fn(G, D, z, real) if args.memory_child == "minigan" else \
        torch_step_fn(G, D, z, real, "cuda" if args.backend == "cupy" else "cpu")
    if args.backend == "cupy":
        import cupy
        import torch
        # like for like: the peak of the bytes handed out to arrays (allocated), not what the
        # caching allocators keep in reserve: torch.cuda.max_memory_allocated, and for cupy the
        # running sum of its pool's mallocs minus frees, through a MemoryHook (UNVERIFIED: written
        # without a GPU)
        hook = _CupyPeakHook() if args.memory_child == "minigan" else None
        torch.cuda.reset_peak_memory_stats()
        with (hook if hook is not None else _nothing()):
            for _ in range(3):
                fn()
            cupy.cuda.Device().synchronize()
            torch.cuda.synchronize()
        peak = hook.peak if hook is not None else torch.cuda.max_memory_allocated()
        print(json.dumps({"peak": int(peak)}))
        return
    before = _rss_kib("VmRSS")
    _reset_peak_rss()
    for _ in range(3):
        fn()
    print(json.dumps({"peak": int((_rss_kib("VmHWM") - before) * 1024)}))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _CupyPeakHook():
    """A cupy MemoryHook tracking the peak of bytes allocated from the pool (made on first use, so
    that importing this module never imports cupy)."""
    import cupy

    class Hook(cupy.cuda.MemoryHook):
        name = "MiniganPeakHook"

        def __init__(self):
            super().__init__()
            self.now = self.peak = 0

        def malloc_postprocess(self, device_id, size, mem_size, mem_ptr, pmem_id):
            self.now += mem_size
            self.peak = max(self.peak, self.now)

        def free_postprocess(self, device_id, mem_size, mem_ptr, pmem_id):
            self.now -= mem_size
    return Hook()


def _rss_kib(field):
    """VmRSS (current) or VmHWM (peak since the last reset) of this process, in KiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak_rss():
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def measure_memory(args, which):
    cmd = [sys.executable, os.path.abspath(__file__), "--workload", args.workload, "--backend", args.backend,
           "--memory-child", which] + (["--batch", str(args.batch)] if args.batch else []) + \
        (["--tf32"] if args.tf32 else []) + (["--threads", str(args.threads)] if args.threads else []) + \
        ["--fusion", args.fusion]
    # glibc's malloc raises its mmap threshold after large blocks are freed (up to 32 MiB), and then
    # serves later ones from freed heap pages that RSS already counts: the growth measured depended on
    # what the warm-up had freed (torch's mlp figure ranged 11-32 MiB).  A fixed threshold gives every
    # block >= 128 KiB its own mapping, returned on free, so the peak RSS growth is the peak of live
    # memory (repeated runs agree to 1 %), the same rule for both libraries.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout.strip().splitlines()[-1]
    return json.loads(out)["peak"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="mlp")
    ap.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    ap.add_argument("--batch", type=int)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps-per-repeat", type=int, default=3)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--threads", type=int, help="threads for torch and numpy's BLAS alike (default: the CPU count)")
    ap.add_argument("--tf32", action="store_true", help="cupy: let both libraries use TF32 tensor cores "
                    "(default: off for both, so both compute in IEEE float32; torch's cuDNN default is on)")
    ap.add_argument("--count-launches", action="store_true", help="cupy only: CUDA kernels per step of each")
    ap.add_argument("--fusion", default="default", choices=["default", "on", "off"],
                    help="minigan's fused layer pairs: the library's default (numpy on, cupy off), on, or off")
    ap.add_argument("--memory-child", choices=["minigan", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fusion != "default":
        minigan.nn.fuse.set_fusion(numpy=args.fusion == "on", cupy=args.fusion == "on")
    if args.memory_child:
        if args.backend == "cupy":
            set_tf32(args.tf32)
        set_threads(args.threads)
        return memory_child(args)
    set_tf32(args.tf32)
    threads = set_threads(args.threads)
    meter = LoadMeter()
    batch, ms, tms = time_both(args)
    print(header(f"{args.workload}, batch {batch}, float32, median of {args.repeats} x {args.steps_per_repeat} steps "
                 f"ABBA, fusion {'on' if minigan.nn.fuse.set_fusion()[args.backend] else 'off'}"
                 + (f", TF32 {'on' if args.tf32 else 'off'} for both" if args.backend == "cupy" else ""),
                 args.backend, threads, meter))
    print(f"minigan {ms:9.2f} ms/step   torch {tms:9.2f} ms/step   ratio minigan/torch {ms / tms:.2f}")
    if args.count_launches and args.backend == "cupy":
        count_launches(args)
    if not args.no_memory:
        pm, pt = measure_memory(args, "minigan"), measure_memory(args, "torch")
        print(f"peak memory growth: minigan {pm / 2**20:.1f} MiB   torch {pt / 2**20:.1f} MiB   ratio {pm / max(pt, 1):.2f}")


if __name__ == "__main__":
    main()
