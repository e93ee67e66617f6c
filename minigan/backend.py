"""The one place that knows NumPy from CuPy.

New arrays are made on the *current* backend (``set_backend`` or the ``MINIGAN_BACKEND``
environment variable, default ``"numpy"``); every op follows its inputs through
``get_xp(*arrays)``. CuPy is imported here only, and only when it is asked for.
"""
import os

import numpy as np

__all__ = ["BackendError", "set_backend", "get_backend", "current_xp", "get_xp", "has_cupy",
           "to_backend", "asnumpy", "as_strided", "is_cupy_array"]

BACKENDS = ("numpy", "cupy")


class BackendError(RuntimeError):
    """A backend was asked for that cannot be used, or arrays of two backends were mixed."""


_cupy = None          # the cupy module once imported and found usable
_cupy_problem = None  # why cupy is unusable, once we know


def _load_cupy():
    """Import cupy and check that a GPU is visible; raise BackendError saying what to do."""
    global _cupy, _cupy_problem
    if _cupy is not None:
        return _cupy
    if _cupy_problem is None:
        try:
            import cupy  # noqa: PLC0415  (the only cupy import in minigan)
        except Exception as e:  # ImportError, or a broken CUDA install raising at import
            _cupy_problem = (f"cupy is not importable ({type(e).__name__}: {e}). Install it with "
                             "`pip install cupy-cuda12x` or `pip install cupy-cuda13x` (from a source checkout: "
                             "`pip install '.[cuda12]'` / `'.[cuda13]'`) "
                             "to match your CUDA driver, or use set_backend('numpy')")
        else:
            try:
                n = cupy.cuda.runtime.getDeviceCount()
            except Exception as e:
                n, detail = 0, f" ({type(e).__name__}: {e})"
            else:
                detail = ""
            if n > 0:
                _cupy = cupy
                return cupy
            _cupy_problem = (f"cupy is installed but no CUDA GPU is visible{detail}; "
                             "run on a machine with a GPU or use set_backend('numpy')")
    raise BackendError(f"the 'cupy' backend is not available: {_cupy_problem}")


def has_cupy():
    """True when cupy imports and sees at least one GPU."""
    try:
        _load_cupy()
    except BackendError:
        return False
    return True


def _check_name(name):
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; expected one of {BACKENDS}")
    return name


_backend = os.environ.get("MINIGAN_BACKEND", "numpy").strip().lower() or "numpy"


def set_backend(name):
    """Choose where new arrays (parameters, noise, data) are made: ``"numpy"`` or ``"cupy"``."""
    global _backend
    _check_name(name)
    if name == "cupy":
        _load_cupy()
    _backend = name


def get_backend():
    """The current backend's name (validated: a bad ``MINIGAN_BACKEND`` fails here, clearly)."""
    _check_name(_backend)
    return _backend


def xp_for(name):
    """The array module of backend ``name``."""
    return _load_cupy() if _check_name(name) == "cupy" else np


def current_xp():
    """The array module of the current backend."""
    return xp_for(get_backend())


def is_cupy_array(a):
    # Decided from the type's module so that numpy-only installs never import cupy.
    t = type(a)
    return t is not np.ndarray and t.__module__.split(".")[0] == "cupy"


def get_xp(*arrays):
    """The array module that ``arrays`` live on; mixing numpy and cupy arrays is an error."""
    if all(type(a) is np.ndarray for a in arrays):           # (the CPU's common case, answered first)
        return np
    kinds = {is_cupy_array(a) for a in arrays if a is not None and hasattr(a, "dtype")}
    if kinds == {True, False}:
        raise BackendError("numpy and cupy arrays were mixed in one call; move everything to one "
                           "backend first: net.to('cupy') / net.to('numpy') for networks, "
                           "minigan.to_backend(x, 'cupy') for arrays")
    return _load_cupy() if kinds == {True} else np


def asnumpy(a):
    """A numpy copy of ``a`` (a no-op for numpy arrays; scalars become 0-d arrays)."""
    return a.get() if is_cupy_array(a) else np.asarray(a)


def to_backend(tree, name=None):
    """Move an array, or a (nested) dict/list/tuple of arrays, to backend ``name`` (default: current)."""
    name = get_backend() if name is None else _check_name(name)
    if isinstance(tree, dict):
        return {k: to_backend(v, name) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_backend(v, name) for v in tree)
    if not hasattr(tree, "dtype"):
        return tree
    if name == "numpy":
        return asnumpy(tree)
    return _load_cupy().asarray(tree)


def as_strided(x, shape, strides):
    """A strided view (no copy) on whichever backend ``x`` lives."""
    if is_cupy_array(x):
        return _load_cupy().lib.stride_tricks.as_strided(x, shape=shape, strides=strides)
    return np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=False)
