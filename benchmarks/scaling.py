"""Data-parallel scaling: steps/s of one process against K ranks (mpiexec), the share of the step
spent in Allreduce, and an analytic model of where scaling stops paying past this machine.

    python benchmarks/scaling.py [--workload dcgan-mnist] [--steps 20] [--batch 64]

Runs the preset's training step (float32) for --steps steps, once as 1 process (BLAS threads = the
CPU count) and once under `mpiexec -n 2` (1 BLAS thread per rank: two ranks on two cores), and
prints steps/s, the speed-up and each rank's Allreduce share.  Then the model: per step,
    T(K) = T_compute / K + T_allreduce(K),   T_allreduce(K) = a 2 (K - 1) + 2 (K - 1) / K * bytes / bw
(ring all-reduce of the gradients of both nets, once per D step and per G step), with T_compute from
the 1-process run and bytes from the model's parameter count, for K up to 64 ranks and typical
interconnect bandwidths; it prints the K past which a rank adds less than half its share.
"""
import argparse
import json
import os
import subprocess
import sys
import time

CHILD = "--child"


def child(args):
    """Run inside each rank (or the single process): time the steps, report JSON from rank 0."""
    import numpy as np
    from minigan.gan import Trainer
    kw = {"data_dir": args.data_dir} if args.data_dir else {}
    t = Trainer(args.workload, seed=0, batch_size=args.batch, steps=args.steps + 2, sample_every=0,
                checkpoint_every=0, **kw)
    for _ in range(2):                                 # warm-up (numba compile, pools)
        t.train_step()
    if t.comm is not None:
        t.comm.seconds = 0.0
        t.comm.comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        t.train_step()
    secs = time.perf_counter() - t0
    n_params = sum(p.size for net in (t.G, t.D) for p in net.parameters().values())
    if t.comm is None or t.comm.rank == 0:
        print(json.dumps({"steps_per_s": args.steps / secs, "allreduce_share": (t.comm.seconds / secs) if t.comm else 0.0,
                          "ranks": 1 if t.comm is None else t.comm.size, "n_params": int(n_params),
                          "n_critic": t.recipe["n_critic"], "threads": os.environ.get("OPENBLAS_NUM_THREADS"),
                          "step_s": secs / args.steps, "dtype_bytes": np.dtype(t.recipe["dtype"]).itemsize}))


def run(args, ranks):
    env = dict(os.environ)
    env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // ranks))
    cmd = [sys.executable, os.path.abspath(__file__), CHILD, "--workload", args.workload, "--steps", str(args.steps),
           "--batch", str(args.batch)] + (["--data-dir", args.data_dir] if args.data_dir else [])
    if ranks > 1:
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        cmd = [mpiexec if os.path.exists(mpiexec) else "mpiexec", "-n", str(ranks)] + cmd
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def model(one, two):
    """Print the ring all-reduce model's steps/s for K ranks and bandwidths."""
    t_compute = one["step_s"]
    grad_bytes = 8 * one["n_params"]               # minigan averages in a float64 buffer
    calls = one["n_critic"] + 1                    # one Allreduce per D step and per G step
    print(f"\nmodel: T(K) = {t_compute * 1e3:.1f} ms / K + {calls} x [a 2(K-1) + 2(K-1)/K x {grad_bytes / 2**20:.1f} MiB / bw]")
    measured_ar = two["allreduce_share"] * two["step_s"]
    print(f"(measured at K=2 on one machine: {measured_ar * 1e3:.1f} ms of Allreduce per step, "
          f"{100 * two['allreduce_share']:.0f} % of the step)")
    print(f"{'bandwidth':>12} " + " ".join(f"K={k:<6}" for k in (1, 2, 4, 8, 16, 32, 64)) + "  pays up to")
    for name, bw, alpha in (("1 Gb/s", 125e6, 50e-6), ("10 Gb/s", 1.25e9, 10e-6), ("100 Gb/s IB", 12.5e9, 2e-6)):
        speeds, best = [], 1
        for k in (1, 2, 4, 8, 16, 32, 64):
            ar = 0.0 if k == 1 else calls * (alpha * 2 * (k - 1) + 2 * (k - 1) / k * grad_bytes / bw)
            t = t_compute / k + ar
            speeds.append(1 / t)
            if k > 1 and (1 / t) / (1 / t_compute) >= k / 2:      # at least half of linear speed-up
                best = k
        print(f"{name:>12} " + " ".join(f"{s:<8.1f}" for s in speeds) + f"  K={best}")
    print("(steps/s; 'pays up to': the largest K that still reaches half of the linear speed-up)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(CHILD, action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workload", default="dcgan-mnist")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--data-dir", default=os.environ.get("MINIGAN_DATA") or
                    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "mnist"))
    args = ap.parse_args()
    if args.child:
        return child(args)
    one, two = run(args, 1), run(args, 2)
    print(f"# {args.workload}, batch {args.batch} (global), float32, {os.cpu_count()} CPUs; 1 process with "
          f"{one['threads']} BLAS threads vs 2 ranks with {two['threads']} each")
    print(f"1 process: {one['steps_per_s']:.2f} steps/s   2 ranks: {two['steps_per_s']:.2f} steps/s   "
          f"speed-up {two['steps_per_s'] / one['steps_per_s']:.2f}x   Allreduce {100 * two['allreduce_share']:.1f} % of a rank's time")
    model(one, two)


if __name__ == "__main__":
    main()
