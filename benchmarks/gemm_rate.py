"""How fast the convolutions' GEMMs run inside the GAN step, against the device's own float32 GEMM
rate measured in the same run (issue #6: on the GPU, dcgan32 at batch 1024, >= 60 %).

    python benchmarks/gemm_rate.py [--backend cupy|numpy] [--workload dcgan32] [--batch 1024] [--tf32]

1. Reference: a square float32 matmul (cupy: 8192^3, numpy: 2048^3), median of 5, in TFLOP/s.
2. One GAN step (gan_step.py's minigan step) with ``xp.matmul`` wrapped: every GEMM of the
   convolutions (conv.py calls nothing else) is counted, 2*M*N*K FLOPs each, and timed: on cupy
   by CUDA events around the call (GPU time, no host sync), on numpy by the wall clock.
3. The step itself, unwrapped, median of 5: the GEMMs' share of it.
Prints the GEMMs' achieved rate as a percentage of the reference, and the GEMM shapes that take
the most time.  Linear layers' GEMMs (``@``) are not counted; the dcgan workloads have none.
"""
import argparse
import collections
import os
import statistics
import sys
import time

import numpy as np

from minigan.backend import xp_for

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gan_step  # noqa: E402
from conditions import LoadMeter, header, set_threads  # noqa: E402


def reference_tflops(xp, backend, n, repeats=5):
    a = xp.asarray(np.random.default_rng(0).standard_normal((n, n), dtype=np.float32))
    b = xp.asarray(np.random.default_rng(1).standard_normal((n, n), dtype=np.float32))
    out = xp.empty((n, n), np.float32)
    sync = gan_step.syncs(backend)[0]
    xp.matmul(a, b, out=out)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        xp.matmul(a, b, out=out)
        sync()
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e12


class GemmRecorder:
    """Wraps ``xp.matmul`` while active: records (M, N, K, timer) for every call."""

    def __init__(self, xp, backend):
        self.xp, self.backend, self.calls = xp, backend, []

    def __enter__(self):
        self.real = self.xp.matmul
        xp, real, calls, cupy_timing = self.xp, self.real, self.calls, self.backend == "cupy"

        def matmul(a, b, *args, **kwargs):
            m, k = a.shape[-2:]
            n = b.shape[-1]
            if cupy_timing:
                start, end = xp.cuda.Event(), xp.cuda.Event()
                start.record()
                r = real(a, b, *args, **kwargs)
                end.record()
                calls.append((m, n, k, (start, end)))
            else:
                t0 = time.perf_counter()
                r = real(a, b, *args, **kwargs)
                calls.append((m, n, k, time.perf_counter() - t0))
            return r
        xp.matmul = matmul
        return self

    def __exit__(self, *exc):
        self.xp.matmul = self.real

    def seconds(self):
        if self.backend == "cupy":
            self.xp.cuda.Device().synchronize()
            return [self.xp.cuda.get_elapsed_time(s, e) / 1e3 for *_, (s, e) in self.calls]
        return [c[3] for c in self.calls]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="cupy", choices=["numpy", "cupy"])
    ap.add_argument("--workload", default="dcgan32", choices=["dcgan32", "dcgan64", "dcgan-mnist"])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--tf32", action="store_true", help="cupy: allow TF32 (CUPY_TF32=1); default IEEE float32")
    ap.add_argument("--threads", type=int, help="threads for numpy's BLAS (default: the CPU count)")
    args = ap.parse_args()
    gan_step.set_tf32(args.tf32)                        # before cupy is imported (CUPY_TF32)
    threads = set_threads(args.threads)
    meter = LoadMeter()
    xp, sync = xp_for(args.backend), gan_step.syncs(args.backend)[0]
    n_ref = 8192 if args.backend == "cupy" else 2048
    ref = reference_tflops(xp, args.backend, n_ref)

    G, D, z, real, batch = gan_step.build(args.workload, args.backend, args.batch)
    step = gan_step.minigan_step_fn(G, D, z, real)
    for _ in range(2):                                  # warm-up: kernels compiled, pools grown
        step()
    sync()
    with GemmRecorder(xp, args.backend) as rec:
        step()
    sync()
    secs = rec.seconds()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)

    flops = [2 * m * n * k for m, n, k, _ in rec.calls]
    gemm_s, gemm_flops = sum(secs), sum(flops)
    rate = gemm_flops / gemm_s / 1e12
    print(header(f"{args.workload} GEMMs, batch {batch}, float32" +
                 (f", TF32 {'on' if args.tf32 else 'off'}" if args.backend == "cupy" else ""),
                 args.backend, threads, meter))
    print(f"reference float32 GEMM {n_ref}^3: {ref:8.2f} TFLOP/s")
    print(f"GAN step: {len(flops)} conv GEMMs, {gemm_flops / 1e9:.1f} GFLOP in {gemm_s * 1e3:.2f} ms -> "
          f"{rate:.2f} TFLOP/s = {100 * rate / ref:.0f} % of the reference")
    print(f"step {step_s * 1e3:.2f} ms (median of 5, unwrapped); GEMMs {100 * gemm_s / step_s:.0f} % of it")
    by_shape = collections.defaultdict(lambda: [0, 0.0, 0])
    for (m, n, k, _), s, f in zip(rec.calls, secs, flops):
        entry = by_shape[(m, n, k)]
        entry[0] += 1
        entry[1] += s
        entry[2] += f
    print(f"{'M x N x K':>22} {'calls':>5} {'ms':>8} {'TFLOP/s':>8} {'% ref':>6}")
    for (m, n, k), (count, s, f) in sorted(by_shape.items(), key=lambda kv: -kv[1][1])[:12]:
        print(f"{f'{m} x {n} x {k}':>22} {count:5d} {s * 1e3:8.3f} {f / s / 1e12:8.2f} {100 * f / s / 1e12 / ref:6.0f}")


if __name__ == "__main__":
    main()
