"""MNIST: a strict IDX reader, a checked downloader, stacked MNIST.

Files are found in ``--data-dir``, else ``$MINIGAN_DATA``, else the download cache
(``$MINIGAN_CACHE`` or ``~/.cache/minigan/mnist``).  Checksums are of the *decompressed* content
(a re-compressed .gz is still the same data); a truncated, corrupt or mismatching file is an error,
never silently wrong data.
"""
import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """A data file is missing, truncated, corrupt or fails its checksum."""


# name -> (expected shape, sha256 of the decompressed IDX bytes or None, md5 of the official .gz)
# The test-set content hashes are those of ../shared/data/mnist (identical to the official files).
# The train-set content SHA-256 could not be computed here (no copy of the train set is reachable
# from this machine); for those files the download verifies the official .gz MD5 (as torchvision
# does) and the exact content length instead.
MNIST_FILES = {
    "train-images-idx3-ubyte": ((60000, 28, 28), None, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train-labels-idx1-ubyte": ((60000,), None, "d53e105ee54ea40749a09fcbcd1e9432"),
    "t10k-images-idx3-ubyte": ((10000, 28, 28),
                               "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                               "9fb629c4189551a2d022fa330f9573f3"),
    "t10k-labels-idx1-ubyte": ((10000,), "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                               "ec29112dd5afa0611ce80d1b7f02629c"),
}
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path):
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise DataError(f"{path}: corrupt or truncated gzip ({e})") from None
    return raw


def read_idx(path):
    """An IDX file (gzip or raw) -> numpy array, with its header and length checked."""
    return _parse_idx(_read_bytes(path), path)


def _parse_idx(data, path):
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"{path}: {len(data)} bytes, but its header {shape} needs {expected}: truncated or corrupt")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _verify(path, name):
    """Check a file against MNIST_FILES: content SHA-256 where pinned, else shape; -> array."""
    shape, sha, _ = MNIST_FILES[name]
    raw = _read_bytes(path)
    arr = _parse_idx(raw, path)            # structure first: a truncated file says so
    if sha is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != sha:
            raise DataError(f"{path}: SHA-256 of the content is {digest}, expected {sha}")
    if arr.shape != shape:
        raise DataError(f"{path}: shape {arr.shape}, expected {shape}")
    return arr


def _locate(folder, name):
    for candidate in (name + ".gz", name, name.replace("-idx", ".idx")):
        p = Path(folder) / candidate
        if p.exists():
            return p
    return None


def default_cache():
    return Path(os.environ.get("MINIGAN_CACHE", Path.home() / ".cache" / "minigan" / "mnist"))


def find_mnist(data_dir=None):
    """The folder holding MNIST: ``data_dir``, else $MINIGAN_DATA, else the cache (if populated)."""
    for folder in (data_dir, os.environ.get("MINIGAN_DATA"), default_cache()):
        if folder is None:
            continue
        if not Path(folder).is_dir():
            if folder is data_dir:
                raise DataError(f"data directory {folder} does not exist")
            continue
        if _locate(folder, "t10k-images-idx3-ubyte") or _locate(folder, "train-images-idx3-ubyte"):
            return Path(folder)
        if folder is data_dir:
            raise DataError(f"data directory {folder} holds no MNIST IDX files "
                            "(train-images-idx3-ubyte[.gz] or t10k-images-idx3-ubyte[.gz])")
    raise DataError("no MNIST found: pass --data-dir, set MINIGAN_DATA, or use --download")


def load_mnist(data_dir=None, split="auto"):
    """-> (images uint8 (N, 28, 28), labels uint8 (N,), split used).  ``split`` "train", "test", or
    "auto": the 60k training set where present, else the 10k test set."""
    folder = find_mnist(data_dir)
    splits = {"train": ["train"], "test": ["t10k"], "auto": ["train", "t10k"]}
    if split not in splits:
        raise ValueError(f"split must be 'train', 'test' or 'auto', got {split!r}")
    for prefix in splits[split]:
        img, lab = _locate(folder, f"{prefix}-images-idx3-ubyte"), _locate(folder, f"{prefix}-labels-idx1-ubyte")
        if img and lab:
            images = _verify(img, f"{prefix}-images-idx3-ubyte")
            labels = _verify(lab, f"{prefix}-labels-idx1-ubyte")
            return images, labels, "train" if prefix == "train" else "test"
    raise DataError(f"{folder}: no complete MNIST {split} split (images and labels)")


def download_mnist(cache_dir=None, base_urls=MIRRORS, names=tuple(MNIST_FILES), timeout=60):
    """Fetch MNIST into ``cache_dir`` (verified, atomically; present valid files are kept).
    -> the folder.  Every file is checked before it is moved into place."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache()
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = folder / (name + ".gz")
        if target.exists():
            try:
                _check_download(target, name)
                continue
            except DataError:
                target.unlink()
        errors = []
        for base in base_urls:
            fd, tmp = tempfile.mkstemp(prefix=".part-", dir=folder)
            try:
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(base + name + ".gz", timeout=timeout) as r:
                    shutil.copyfileobj(r, out)
                _check_download(tmp, name)
                os.replace(tmp, target)
                break
            except (OSError, DataError) as e:
                errors.append(f"{base}: {e}")
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            raise DataError(f"could not download {name}: " + "; ".join(errors))
    return folder


def _check_download(path, name):
    shape, sha, gz_md5 = MNIST_FILES[name]
    if sha is None:
        raw = Path(path).read_bytes()
        if hashlib.md5(raw).hexdigest() != gz_md5:
            raise DataError(f"{name}: MD5 of the download is {hashlib.md5(raw).hexdigest()}, expected {gz_md5}")
    _verify(path, name)


def stacked_mnist(images, labels, n, rng):
    """Stacked MNIST (Metz et al. 2017): three independent digits as the R, G, B channels.
    -> (n, 3, 28, 28) uint8 images and labels 100 d_R + 10 d_G + d_B in 0..999 (1000 modes)."""
    idx = rng.integers(0, len(images), size=(n, 3))
    stacked = np.stack([images[idx[:, c]] for c in range(3)], axis=1)
    mode = 100 * labels[idx[:, 0]].astype(np.int64) + 10 * labels[idx[:, 1]] + labels[idx[:, 2]]
    return stacked, mode
