"""Compile every fused CuPy kernel (minigan/ops/_cupy.py) with NVRTC for sm_90, in float and double,
with the options the package uses: proof without a GPU that the CUDA text CI ships is valid.

    pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12     # NVRTC comes with these; no GPU or driver needed
    python tools/nvrtc_check.py [--arch sm_90]

It compiles ``_cupy.kernel_source(dtype)``, the exact text ``cupy.RawModule`` compiles on a device,
with ``_cupy.OPTIONS`` plus the architecture, and checks that every kernel in ``_cupy.KERNELS`` is in
the cubin's symbol table.  Exit status 0 when all compile; 1 when one fails (NVRTC's log printed);
2 when NVRTC cannot be loaded here.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from minigan.ops import _cupy  # noqa: E402


def load_nvrtc():
    """cupy's NVRTC binding, or None where it cannot be loaded (no cupy, or no NVRTC library)."""
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
    except Exception:           # ImportError, or the library itself is missing
        return None
    return nvrtc


def compile_source(nvrtc, source, arch):
    """-> (ok, log, cubin bytes or None)."""
    prog = nvrtc.createProgram(source, "minigan_fused.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(prog, list(_cupy.OPTIONS) + [f"--gpu-architecture={arch}"])
        except Exception as err:             # NVRTCError: the log says why
            return False, f"{err}\n{nvrtc.getProgramLog(prog)}", None
        return True, nvrtc.getProgramLog(prog), nvrtc.getCUBIN(prog)
    finally:
        nvrtc.destroyProgram(prog)


def check(nvrtc, arch="sm_90"):
    """Compile for float32 and float64 -> [(dtype name, kernel, ok, message)], one row per kernel."""
    rows = []
    for dtype in (np.float32, np.float64):
        ok, log, cubin = compile_source(nvrtc, _cupy.kernel_source(dtype), arch)
        for name in _cupy.KERNELS:
            if not ok:
                rows.append((np.dtype(dtype).name, name, False, log.strip()))
            elif name.encode() not in cubin:
                rows.append((np.dtype(dtype).name, name, False, "compiled, but the kernel is not in the cubin"))
            else:
                rows.append((np.dtype(dtype).name, name, True, f"{len(cubin)} bytes of cubin"))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="sm_90")
    args = ap.parse_args(argv)
    nvrtc = load_nvrtc()
    if nvrtc is None:
        print("nvrtc_check: NVRTC cannot be loaded here (pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12)",
              file=sys.stderr)
        return 2
    print(f"NVRTC {'.'.join(map(str, nvrtc.getVersion()))}, {args.arch}, options {' '.join(_cupy.OPTIONS)}")
    rows = check(nvrtc, args.arch)
    for dtype, name, ok, msg in rows:
        print(f"{dtype:8s} {name:12s} {'ok' if ok else 'FAILED'}  {msg if ok else ''}")
        if not ok:
            print(msg)
    bad = sum(not ok for _, _, ok, _ in rows)
    print(f"{len(rows) - bad} of {len(rows)} kernels compiled")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
