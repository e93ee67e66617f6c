"""One ``.npz`` file per checkpoint: nested dicts of arrays flattened with "/" keys, strings as
0-d unicode arrays, written atomically (temp file, fsync, rename) and read without pickle."""
import os
import tempfile

import numpy as np

from .backend import asnumpy


def _flatten(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if "/" in str(k):
            raise ValueError(f"checkpoint keys must not contain '/', got {k!r}")
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = np.asarray(v) if isinstance(v, (str, int, float, bool)) else asnumpy(v)
    return out


def save(path, tree):
    """Write ``tree`` (nested dicts of arrays, numbers, strings) to ``path`` atomically: a crash at
    any moment leaves either the old file or the new one, never a torn one."""
    flat = _flatten(tree)
    for k, v in flat.items():
        if v.dtype == object:
            raise TypeError(f"checkpoint entry {k!r} is an object array; only numeric and string arrays are stored")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **flat)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class CheckpointFileError(ValueError):
    """A file that is not a readable pickle-free checkpoint; the message says what is wrong with it."""


def load(path):
    """Read a checkpoint written by ``save`` (or any pickle-free ``.npz``) into nested dicts.
    A damaged file (truncated, bit-flipped, empty, not a zip) or one holding pickled objects raises
    CheckpointFileError saying so; no pickled object is ever loaded."""
    import zipfile
    path = os.fspath(path)
    out = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                node = out
                *parents, leaf = key.split("/")
                for p in parents:
                    node = node.setdefault(p, {})
                value = data[key]
                if not isinstance(value, np.ndarray):       # numpy hands back raw bytes for a non-.npy member
                    raise CheckpointFileError(f"{path} is truncated or corrupt (entry {key!r} is not an array); "
                                              f"it cannot be read")
                node[leaf] = value
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise CheckpointFileError(f"{path} holds pickled Python objects; minigan checkpoints never do, and "
                                      f"pickles are refused (they could run code)") from None
        raise CheckpointFileError(f"{path} is truncated or corrupt ({e}); it cannot be read") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CheckpointFileError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); "
                                  f"it cannot be read") from None
    return out
