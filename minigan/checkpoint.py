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


def load(path):
    """Read a checkpoint written by ``save`` (or any pickle-free ``.npz``) into nested dicts."""
    out = {}
    with np.load(os.fspath(path), allow_pickle=False) as data:
        for key in data.files:
            node = out
            *parents, leaf = key.split("/")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = data[key]
    return out
