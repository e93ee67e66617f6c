"""Shared test helpers: backends, the PyTorch twin of a minigan net, tolerances, shared data."""
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import minigan
from minigan.ops import _numba
from minigan.ops import conv as conv_ops
from torch_twin import torch_net_like, torch_twin  # noqa: F401  (re-exported for the tests)

# Every run draws the same examples (derandomized: a failure here is a failure in CI and back);
# MINIGAN_HYPOTHESIS=explore draws new ones each run (with MINIGAN_EXAMPLES=300, say) to look further.
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
_EXAMPLES = int(os.environ.get("MINIGAN_EXAMPLES", "25"))
settings.register_profile("default", max_examples=_EXAMPLES, deadline=None, derandomize=True,
                          suppress_health_check=_HEALTH)
settings.register_profile("explore", max_examples=_EXAMPLES, deadline=None, derandomize=False,
                          suppress_health_check=_HEALTH)
settings.load_profile(os.environ.get("MINIGAN_HYPOTHESIS", "default"))

BACKENDS = ["numpy"] + (["cupy"] if minigan.has_cupy() else [])
SHARED = Path(os.environ.get("MINIGAN_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


KERNELS = ["numpy", "numpy-chunked"] + (["numba"] if _numba.available() else [])


@pytest.fixture(params=KERNELS)
def cpu_kernels(request, monkeypatch):
    """Run a test with the plain-numpy ops, again with convolutions split into one-sample batch
    chunks (the path large batches take), and with the numba kernels (when installed)."""
    previous = _numba.set_enabled(request.param == "numba")
    if request.param == "numpy-chunked":
        monkeypatch.setattr(conv_ops, "COLUMN_BYTES", 1)
    yield request.param
    _numba.set_enabled(previous)


def shift_running_stats(net):
    """Move every BatchNorm's running statistics away from their initial values (in place), so that
    eval mode is a real test."""
    for name, buf in net.buffers().items():
        if name.endswith("running_mean"):
            buf += np.linspace(-0.5, 0.5, buf.size).astype(buf.dtype)
        elif name.endswith("running_var"):
            buf *= np.linspace(0.5, 2.0, buf.size).astype(buf.dtype)


def drop_recipe_key(run_dir, key):
    """Rewrite the run's checkpoint as a version before recipe key ``key`` existed saved it."""
    import json
    from minigan import checkpoint
    path = Path(run_dir) / "checkpoint.npz"
    tree = checkpoint.load(path)
    cfg = json.loads(str(tree["config"]))
    del cfg["recipe"][key]
    tree["config"] = json.dumps(cfg)
    checkpoint.save(path, tree)


def shared_data(*parts):
    """A path under ../shared/data; in CI a missing file fails the test instead of skipping it."""
    path = SHARED.joinpath("data", *parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"shared data missing in CI: {path}")
        pytest.skip(f"shared data not found: {path}")
    return path


def run_minigan(*args, cwd=None, timeout=600, env=None):
    """``python -m minigan ARGS`` in a subprocess -> CompletedProcess (text stdout/stderr)."""
    return subprocess.run([sys.executable, "-m", "minigan", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


@contextlib.contextmanager
def kernels_enabled(kernels, flag):
    """A module of fast twins (ops._numba, ops._cupy) switched on or off inside the block; its own
    setting is restored after."""
    previous = kernels.set_enabled(flag)
    try:
        yield
    finally:
        kernels.set_enabled(previous)


def twin_and_plain(kernels, fn, *args):
    """fn(*args) with a module of fast twins switched on (ops._numba, ops._cupy), then with it off
    (the plain path, their oracle) -> (fast, plain); the module's own setting is restored."""
    with kernels_enabled(kernels, True):
        fast = fn(*args)
    with kernels_enabled(kernels, False):
        plain = fn(*args)
    return fast, plain


def assert_rel(actual, expected, tol, what="", floor=0.0):
    err = minigan.gradcheck.rel_error(minigan.asnumpy(actual), np.asarray(expected), floor)
    assert err <= tol, f"{what}: max relative error {err:.3e} > {tol:g}"
    return err


def _torch_run(tnet, x, dy, train):
    """Forward + backward through a torch net -> {quantity: numpy array} (state read after the step)."""
    import torch

    tnet.train(train)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)     # x and dy carry the net's dtype
    for p in tnet.parameters():
        p.grad = None
    yt = tnet(xt)
    yt.backward(torch.from_numpy(dy))
    out = {"output": yt.detach().numpy(), "input gradient": xt.grad.numpy()}
    out.update({f"gradient of {k}": p.grad.numpy() for k, p in tnet.named_parameters()})
    out.update({f"state {k}": v.numpy() for k, v in tnet.state_dict().items()})
    return out


def compare_with_torch(net, tnet, xs, train, tol, rng, reference=None):
    """Run forward + backward on each x in ``xs`` through both nets; compare outputs, input grads,
    every parameter grad and (after each step) the whole state dict.

    Without ``reference``: each quantity within ``tol`` (relative) of torch's.
    With ``reference`` (a float64 torch twin holding the same values): for float32, minigan's error
    against the float64 reference must stay within max(tol, 4 x torch's own float32 error against
    it).  Measured over 19,622 comparisons (60 examples per layer kind): minigan's error reached
    5.2e-6 and was at most 1.6x torch's in 99 % of them, so tol = 1e-5 and 4x leave ~2x slack."""
    for x in xs:
        y, tape = net.forward(x, train=train)
        dy = rng.standard_normal(y.shape).astype(net.dtype)
        dx, grads = net.backward(dy, tape)
        assert y.dtype == dx.dtype == net.dtype and all(g.dtype == net.dtype for g in grads.values()), \
            "a result left the network's dtype"
        ours = {"output": y, "input gradient": dx}
        ours.update({f"gradient of {k}": g for k, g in grads.items()})
        sd = net.state_dict()
        ours.update({f"state {k}": v for k, v in sd.items()})
        theirs = _torch_run(tnet, x, dy, train)
        assert set(ours) == set(theirs), f"names differ: {sorted(ours)} vs {sorted(theirs)}"
        assert list(sd) == [k[6:] for k in theirs if k.startswith("state ")], "state_dict order differs"
        ref = None if reference is None else _torch_run(reference, x.astype(np.float64), dy.astype(np.float64), train)
        for what, value in ours.items():
            if ref is None:
                assert_rel(value, theirs[what], tol, what)
            else:
                err = minigan.gradcheck.rel_error(minigan.asnumpy(value), ref[what])
                torch_err = minigan.gradcheck.rel_error(theirs[what], ref[what])
                assert err <= max(tol, 4 * torch_err), \
                    f"{what}: error {err:.3e} against float64, torch float32's is {torch_err:.3e}"
