"""Per-op timings: minigan vs PyTorch in the same run (forward, backward alone, forward+backward).

    python benchmarks/ops.py [--backend numpy|cupy] [--batch 64] [--dtype float32] [--repeats 7]

Prints, per op: median ms for minigan and torch, the ratio minigan/torch, and minigan's achieved
GFLOP/s for the convolutions (2 * MACs; backward counts backward-data + backward-filter).  "bwd"
runs the backward alone, again and again on one tape (torch: retain_graph=True).  The two libraries
alternate ABBA within each pass (never all of one library's repeats first), get the same thread
count (--threads), and TF32 is off for both on the GPU; the header names every condition.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

import minigan

# the torch twin lives with the tests (the oracle) and serves here as the competitor
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from torch_twin import torch_net_like  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conditions import LoadMeter, header, set_threads  # noqa: E402
from gan_step import set_tf32  # noqa: E402


def _sync(backend):
    if backend == "cupy":
        import cupy
        cupy.cuda.Device().synchronize()


def median_ms_abba(fns, syncs, repeats):
    """Median ms of each of two functions, run alternately ABBA (warm-up excluded)."""
    for fn, sync in zip(fns, syncs):
        fn()
        sync()
    times = ([], [])
    for r in range(repeats):
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            fns[i]()
            syncs[i]()
            times[i].append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times[0]), statistics.median(times[1])


def cases(batch):
    C, CT, BN = minigan.Conv2d, minigan.ConvTranspose2d, minigan.BatchNorm2d
    return [  # (name, layer, input shape, forward MACs)
        ("Conv2d 1->64 k4 s2 32x32", C(1, 64, 4, 2, 1, bias=False), (batch, 1, 32, 32), batch * 64 * 16 * 16 * 1 * 16),
        ("Conv2d 64->128 k4 s2 16x16", C(64, 128, 4, 2, 1, bias=False), (batch, 64, 16, 16), batch * 128 * 8 * 8 * 64 * 16),
        ("Conv2d 128->256 k4 s2 8x8", C(128, 256, 4, 2, 1, bias=False), (batch, 128, 8, 8), batch * 256 * 4 * 4 * 128 * 16),
        # dcgan-mnist's image layer (stride 1, 64 -> 1): run as a transposed conv (ops/conv.py, _output_side)
        ("Conv2d 64->1 k3 s1 p1 28x28", C(64, 1, 3, 1, 1), (batch, 64, 28, 28), batch * 1 * 28 * 28 * 64 * 9),
        ("ConvT 100->256 k4 s1 1x1", CT(100, 256, 4, 1, 0, bias=False), (batch, 100, 1, 1), batch * 100 * 256 * 16),
        ("ConvT 256->128 k4 s2 4x4", CT(256, 128, 4, 2, 1, bias=False), (batch, 256, 4, 4), batch * 256 * 16 * 128 * 16),
        ("ConvT 128->64 k4 s2 8x8", CT(128, 64, 4, 2, 1, bias=False), (batch, 128, 8, 8), batch * 128 * 64 * 64 * 16),
        ("BatchNorm2d 128 16x16", BN(128), (batch, 128, 16, 16), 0),
        # inside a network BatchNorm gets a convolution's output: channels-last memory (for both libraries)
        ("BatchNorm2d 128 16x16 ch-last", BN(128), (batch, 128, 16, 16), 0),
        ("Linear 1024->784", minigan.Linear(1024, 784), (batch, 1024), batch * 1024 * 784),
    ]


def _memory(a, name):
    """NCHW values; channels-last memory for the cases that say so."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2) if name.endswith("ch-last") else a


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, help="threads for torch and numpy's BLAS alike (default: the CPU count)")
    args = ap.parse_args()
    import torch
    if args.backend == "cupy":
        set_tf32(False)
    threads = set_threads(args.threads)
    meter = LoadMeter()

    dev = "cuda" if args.backend == "cupy" else "cpu"
    tdtype = getattr(torch, args.dtype)
    sync = (lambda: _sync(args.backend))
    tsync = (lambda: torch.cuda.synchronize()) if dev == "cuda" else (lambda: None)
    print(f"{'op':30} {'pass':8} {'minigan ms':>11} {'torch ms':>9} {'ratio':>6} {'GFLOP/s':>8}")
    for name, layer, shape, macs in cases(args.batch):
        net = minigan.Sequential(layer, dtype=np.dtype(args.dtype), seed=0).to(args.backend)
        tnet = torch_net_like(net).to(dev, tdtype)
        x = _memory(np.random.default_rng(0).standard_normal(shape).astype(args.dtype), name)
        gx = minigan.to_backend(x, args.backend)
        tx = torch.from_numpy(x).to(dev).requires_grad_(True)
        y, _ = net.forward(gx)
        dy = minigan.to_backend(_memory(np.random.default_rng(1).standard_normal(y.shape).astype(args.dtype), name),
                                args.backend)
        tdy = torch.from_numpy(minigan.asnumpy(dy)).to(dev)

        def fwd():
            net.forward(gx, train=True)

        def fwd_bwd():
            out, tape = net.forward(gx, train=True)
            net.backward(dy, tape)

        def tfwd():
            with torch.no_grad():
                tnet(tx)

        def tfwd_bwd():
            tnet.zero_grad(set_to_none=True)
            tx.grad = None
            tnet(tx).backward(tdy)

        _, tape = net.forward(gx, train=True)               # kept: the backward alone runs on it repeatedly

        def bwd():
            net.backward(dy, tape)

        tout = tnet(tx)

        def tbwd():
            tnet.zero_grad(set_to_none=True)
            tx.grad = None
            tout.backward(tdy, retain_graph=True)

        for label, f, tf, flops in (("fwd", fwd, tfwd, 2 * macs), ("bwd", bwd, tbwd, 4 * macs),
                                    ("fwd+bwd", fwd_bwd, tfwd_bwd, 6 * macs)):
            ms, tms = median_ms_abba((f, tf), (sync, tsync), args.repeats)
            gflops = f"{flops / ms / 1e6:8.1f}" if flops else f"{'':8}"
            print(f"{name:30} {label:8} {ms:11.3f} {tms:9.3f} {ms / tms:6.2f} {gflops}")
    print(header(f"ops, backend {args.backend}, {args.dtype}, batch {args.batch}, median of {args.repeats} ABBA",
                 args.backend, threads, meter))


if __name__ == "__main__":
    main()
