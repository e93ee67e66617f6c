"""softmax_cross_entropy and mse: finite differences and PyTorch."""
import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import minigan
from minigan.gradcheck import check_loss
from minigan.ops.losses import mse, softmax_cross_entropy

from conftest import assert_rel


@given(n=st.integers(1, 6), k=st.integers(2, 7), seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 20.0, 500.0]))
def test_softmax_cross_entropy_matches_torch(n, k, seed, scale):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)) * scale
    y = rng.integers(0, k, n)
    loss, dx = softmax_cross_entropy(x, y)
    xt = torch.tensor(x, requires_grad=True)
    tl = F.cross_entropy(xt, torch.tensor(y))
    tl.backward()
    assert np.isfinite(float(loss))
    assert_rel(np.asarray(loss), tl.detach().numpy(), 1e-10, "loss", floor=1.0)
    assert_rel(dx, xt.grad.numpy(), 1e-10, "dlogits", floor=1 / n)
    if scale == 1.0:
        assert check_loss(lambda z: softmax_cross_entropy(z, y), [x.copy()])[0] <= 1e-7


def test_mse_matches_torch_and_fd():
    rng = np.random.default_rng(0)
    p, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    loss, dp = mse(p, t)
    pt = torch.tensor(p, requires_grad=True)
    tl = F.mse_loss(pt, torch.tensor(t))
    tl.backward()
    assert_rel(np.asarray(loss), tl.detach().numpy(), 1e-12)
    assert_rel(dp, pt.grad.numpy(), 1e-12)
    assert check_loss(lambda z: mse(z, t), [p.copy()])[0] <= 1e-7


def test_bad_labels():
    import pytest
    with pytest.raises(ValueError, match="labels must be"):
        softmax_cross_entropy(np.zeros((3, 4)), np.zeros(3))
    assert minigan.ops.losses.softmax_cross_entropy is softmax_cross_entropy
