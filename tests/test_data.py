"""MNIST IDX reader, checked download (loopback server), stacked MNIST, 2-D mixtures."""
import gzip
import http.server
import threading
from functools import partial

import numpy as np
import pytest

from minigan import data
from minigan.data import DataError

from conftest import shared_data


@pytest.fixture(scope="module")
def mnist_dir():
    return shared_data("mnist")


def test_reads_shared_test_set(mnist_dir):
    images, labels, split = data.load_mnist(mnist_dir)
    assert split == "test" and images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert images.dtype == np.uint8 and labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_raw_and_gz_agree(mnist_dir, tmp_path):
    raw = gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(raw)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "t10k-labels-idx1-ubyte"),
                                  data.read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz"))


def _copy_test_set(src, dst, mutate_images=None):
    dst.mkdir(exist_ok=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        blob = (src / name).read_bytes()
        if mutate_images and "images" in name:
            blob = mutate_images(blob)
        (dst / name).write_bytes(blob)
    return dst


def _flip_one_pixel(blob):
    raw = bytearray(gzip.decompress(blob))
    raw[5000] ^= 0xFF
    return gzip.compress(bytes(raw))


@pytest.mark.parametrize("mutate,pattern", [
    (lambda b: b[: len(b) // 2], "corrupt or truncated gzip"),
    (lambda b: gzip.compress(gzip.decompress(b)[:-100]), "truncated or corrupt"),
    (_flip_one_pixel, "SHA-256 of the content"),
    (lambda b: gzip.compress(b"\x00\x00\x07\x03" + gzip.decompress(b)[4:]), "not an IDX file"),
])
def test_bad_files_are_clear_errors(mnist_dir, tmp_path, mutate, pattern):
    folder = _copy_test_set(mnist_dir, tmp_path / "bad", mutate)
    with pytest.raises(DataError, match=pattern):
        data.load_mnist(folder)


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MINIGAN_DATA", raising=False)
    monkeypatch.setenv("MINIGAN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="does not exist"):
        data.load_mnist(tmp_path / "nope")
    with pytest.raises(DataError, match="holds no MNIST"):
        data.load_mnist(tmp_path)
    with pytest.raises(DataError, match="--download"):
        data.load_mnist()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(folder):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


NAMES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def test_download_verifies_and_falls_back_to_the_next_mirror(mnist_dir, tmp_path, serve):
    good = serve(_copy_test_set(mnist_dir, tmp_path / "good"))
    bad = serve(_copy_test_set(mnist_dir, tmp_path / "bad", _flip_one_pixel))
    empty = serve(tmp_path)                                   # 404s
    cache = tmp_path / "cache"
    folder = data.download_mnist(cache, base_urls=(empty, bad, good), names=NAMES)
    images, labels, split = data.load_mnist(folder)
    assert images.shape == (10000, 28, 28) and split == "test"
    assert sorted(p.name for p in cache.iterdir()) == sorted(n + ".gz" for n in NAMES)   # no partial files


def test_download_of_only_bad_data_leaves_nothing(mnist_dir, tmp_path, serve):
    bad = serve(_copy_test_set(mnist_dir, tmp_path / "bad", lambda b: b[:1000]))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="could not download t10k-images-idx3-ubyte"):
        data.download_mnist(cache, base_urls=(bad,), names=NAMES)
    assert list(cache.iterdir()) == []


def test_stacked_mnist_modes(mnist_dir):
    images, labels, _ = data.load_mnist(mnist_dir)
    x, modes = data.stacked_mnist(images, labels, 2000, np.random.default_rng(0))
    assert x.shape == (2000, 3, 28, 28) and x.dtype == np.uint8
    assert modes.min() >= 0 and modes.max() <= 999 and len(np.unique(modes)) > 800
    # each sample's mode names its three digits: find every channel's image among the digits
    for k in range(5):
        digits = (modes[k] // 100, modes[k] // 10 % 10, modes[k] % 10)
        for c, d in enumerate(digits):
            same = np.flatnonzero((images == x[k, c]).all(axis=(1, 2)))
            assert same.size and d in set(labels[same].tolist()), (k, c)


def test_mixtures_geometry():
    ring, grid = data.ring8(), data.grid25()
    np.testing.assert_allclose(np.linalg.norm(ring.centers, axis=1), 1.0)
    np.testing.assert_allclose(ring.centers[2], [0.0, 1.0], atol=1e-15)
    assert grid.centers.shape == (25, 2) and set(grid.centers[:, 0]) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    x, m = ring.sample(20000, np.random.default_rng(0))
    assert np.bincount(m).min() > 2200
    assert abs(np.std(x - ring.centers[m]) - 0.01) < 0.001
