"""glibc's malloc, tuned for a training loop: keep freed memory instead of handing it back each step.

A training step allocates and frees the same arrays every step.  With glibc's default (dynamic)
thresholds, memory freed at the top of the heap goes back to the kernel as soon as more than a
small threshold (128 KiB at first) lies free there, and the next step's arrays of that size are
mapped afresh: each new page costs a page fault and its zeroing.  grid25's step (arrays of
256 x 128 floats, 128 KiB) paid ~380 page faults a step, ~0.8 ms of kernel time against a step of
~4-5 ms (AMD EPYC, 2 cores; benchmarks/quality.md, session 32).  Three settings stop it:

    M_MMAP_THRESHOLD = 32 MiB    arrays below it come from the heap (glibc's largest allowed value
                                 on 64-bit), not from a fresh mmap of their own
    M_TRIM_THRESHOLD = 256 MiB   the heap is trimmed only when that much lies free at its top
    M_TOP_PAD        = 64 MiB    the heap grows, and stays, 64 MiB beyond what it needs

The cost is resident memory that glibc keeps for reuse: up to the trim threshold of freed heap.
Where an array lives does not change arithmetic: runs train bit for bit as without it (the test).

The settings are process-wide, so the library never applies them on import: ``minigan train``,
``sample`` and ``eval`` do (the CLI is the process), and a program of your own may call
``tune_malloc()``.  Nothing is changed when MINIGAN_TUNE_MALLOC=0, when the environment already
tunes malloc (a MALLOC_* variable or GLIBC_TUNABLES: your choice wins), or off glibc (macOS,
Windows, musl), where the call returns False.
"""
import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3          # <malloc.h>
SETTINGS = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 256 << 20), (M_TOP_PAD, 64 << 20))
SWITCH = "MINIGAN_TUNE_MALLOC"


def _user_tuned(environ):
    """Whether the environment already sets glibc's malloc parameters (MALLOC_TOP_PAD_, MALLOC_ARENA_MAX, ...)."""
    return "GLIBC_TUNABLES" in environ or any(k.startswith("MALLOC_") for k in environ)


def tune_malloc(environ=None):
    """Apply SETTINGS to glibc's malloc (process-wide; see the module's docstring).  -> True when
    applied, False when skipped: MINIGAN_TUNE_MALLOC=0, malloc already tuned by the environment,
    or a C library other than glibc."""
    environ = os.environ if environ is None else environ
    flag = environ.get(SWITCH, "1").strip()
    if flag not in ("0", "1"):
        raise ValueError(f"{SWITCH} must be 0 or 1 (tune glibc's malloc for training), got {flag!r}")
    if flag == "0" or _user_tuned(environ) or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS)      # (mallopt: 1 on success)
