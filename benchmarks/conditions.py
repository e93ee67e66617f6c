"""What every benchmark prints about the conditions of its run, and the thread counts it sets.

    threads = set_threads(args.threads)        # the same count for torch and for numpy's BLAS
    meter = LoadMeter()                        # before the timed part
    ...
    print(header("dcgan32, batch 64, float32", backend, threads, meter))

The header names the CPU model (or the GPU), the BLAS numpy uses and its kernel (threadpoolctl),
the OPENBLAS_* variables (these machines pin OPENBLAS_CORETYPE=Haswell, which halves numpy's
sgemm on an AVX-512 CPU), the thread counts of both libraries, whether numba's kernels are on,
and how much of the machine other processes used while the benchmark ran (from /proc/stat, minus
this process and its children); a run where they took more than 10 % is flagged UNDER LOAD.
"""
import os
import platform

import numpy as np

LOAD_FLAG = 0.10


def set_threads(n=None):
    """Give torch and numpy's BLAS the same thread count (default: the CPU count); -> n.
    The threadpoolctl limit stays in force for the rest of the process."""
    import threadpoolctl
    import torch
    n = int(n or os.cpu_count() or 1)
    torch.set_num_threads(n)
    set_threads.limiter = threadpoolctl.threadpool_limits(n)      # kept alive: the limit holds while it lives
    return n


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas():
    """'openblas 0.3.31 (SkylakeX kernel, 2 threads)' for the BLAS numpy loaded, via threadpoolctl."""
    import threadpoolctl
    infos = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"
             and "numpy" in (i.get("filepath") or "")] or \
        [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    if not infos:
        return "unknown BLAS"
    i = infos[0]
    kernel = i.get("architecture") or "?"
    return f"{i.get('internal_api')} {i.get('version')} ({kernel} kernel, {i.get('num_threads')} threads)"


def openblas_env():
    pins = {k: v for k, v in sorted(os.environ.items()) if k.startswith("OPENBLAS")}
    return ", ".join(f"{k}={v}" for k, v in pins.items()) or "OPENBLAS_* unset"


def _stat():
    """(busy, total) jiffies of all CPUs, and this process's own CPU jiffies (children included)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    idle = fields[3] + fields[4]
    t = os.times()
    own = (t.user + t.system + t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK")
    return sum(fields) - idle, sum(fields), own


class LoadMeter:
    """The share of the machine that *other* processes used between construction and ``share()``."""

    def __init__(self):
        try:
            self.start = _stat()
        except (OSError, ValueError):
            self.start = None

    def share(self):
        if self.start is None:
            return None
        busy, total, own = (b - a for a, b in zip(self.start, _stat()))
        return max(0.0, (busy - own) / max(total, 1))


def header(what, backend, threads, meter=None):
    """One header line (two when the run was under load) naming every condition of the run."""
    import torch
    from minigan.ops import _cupy, _numba
    if backend == "cupy":
        device = f"{torch.cuda.get_device_name()} (TF32 off for both unless the line says otherwise)"
    else:
        device = f"{cpu_model()}, {blas()}, {openblas_env()}"
    numba = "on" if backend == "numpy" and _numba.enabled() else "off"
    line = (f"# {what}; {device}; numpy {np.__version__}, torch {torch.__version__}; threads: torch "
            f"{torch.get_num_threads()}, BLAS {threads}; numba kernels {numba}")
    if backend == "cupy":
        line += f"; fused CuPy kernels {'on' if _cupy.enabled() else 'off'} (MINIGAN_CUPY_FUSED)"
    share = None if meter is None else meter.share()
    if share is not None:
        line += f"; other processes used {100 * share:.0f} % of the CPUs during the run"
        if share > LOAD_FLAG:
            line += "\n# UNDER LOAD: other processes took more than 10 % of the machine; the timings are suspect"
    return line
