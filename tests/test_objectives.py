"""bce_with_logits and every GAN objective against torch autograd, saturated logits included."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import minigan
from minigan.gradcheck import check_loss

from conftest import assert_rel


def torch_objective(name, r, f):
    """The objectives written with torch primitives, straight from their definitions."""
    if name in ("minimax", "non_saturating"):
        # log σ(x) = logsigmoid(x), log(1 - σ(x)) = logsigmoid(-x): torch evaluates these with log1p,
        # whereas its BCE-with-logits loses the digits of losses below ~1e-13.
        d = -F.logsigmoid(r).mean() - F.logsigmoid(-f).mean()
        g = F.logsigmoid(-f).mean() if name == "minimax" else -F.logsigmoid(f).mean()
    elif name == "wasserstein":
        d, g = f.mean() - r.mean(), -f.mean()
    elif name == "hinge":
        d, g = F.relu(1 - r).mean() + F.relu(1 + f).mean(), -f.mean()
    else:
        d, g = 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f ** 2).mean(), 0.5 * ((f - 1) ** 2).mean()
    return d, g


logit_arrays = st.tuples(st.integers(1, 6), st.integers(0, 2**16), st.sampled_from([1.0, 5.0, 50.0, 800.0]))


def _logits(n, seed, scale, shape_1=True):
    x = np.random.default_rng(seed).standard_normal((n, 1) if shape_1 else (n,)) * scale
    return x


@pytest.mark.parametrize("name", minigan.OBJECTIVES)
@given(real=logit_arrays, fake=logit_arrays)
def test_objective_matches_torch(name, real, fake):
    r, f = _logits(*real), _logits(*fake)
    obj = minigan.gan_objective(name)
    loss_d, dr, df = obj.d_loss(r, f)
    loss_g, dg = obj.g_loss(f)
    rt, ft = torch.tensor(r, requires_grad=True), torch.tensor(f, requires_grad=True)
    td, tg = torch_objective(name, rt, ft)
    td.backward()
    assert np.isfinite(float(loss_d)) and np.isfinite(dr).all() and np.isfinite(df).all()
    # gradients are compared on the scale 1/n of a gradient of a mean: where a logit saturates its
    # gradient is ~e^-|x| and torch's own value is off there (e.g. -2.07e-44 for the exact -3.72e-44)
    # losses are compared on a scale of at least 1 (a saturated loss is ~e^-|x|; torch's is off there)
    assert_rel(np.asarray(loss_d), td.detach().numpy(), 1e-10, "d loss", floor=1.0)
    assert_rel(dr, rt.grad.numpy(), 1e-10, "dlogit_real", floor=1 / r.size)
    assert_rel(df, ft.grad.numpy(), 1e-10, "dlogit_fake", floor=1 / f.size)
    ft2 = torch.tensor(f, requires_grad=True)
    tg = torch_objective(name, rt.detach(), ft2)[1]
    tg.backward()
    assert_rel(np.asarray(loss_g), tg.detach().numpy(), 1e-10, "g loss", floor=1.0)
    assert_rel(dg, ft2.grad.numpy(), 1e-10, "dlogit_fake (G)", floor=1 / f.size)


@given(n=st.integers(1, 8), seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 30.0, 1e4]))
def test_bce_with_logits_matches_torch(n, seed, scale):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2)) * scale
    t = rng.uniform(0, 1, (n, 2))
    loss, dx = minigan.bce_with_logits(x, t)
    xt = torch.tensor(x, requires_grad=True)
    tl = F.binary_cross_entropy_with_logits(xt, torch.tensor(t))
    tl.backward()
    assert_rel(np.asarray(loss), tl.detach().numpy(), 1e-10, "loss", floor=1.0)
    assert_rel(dx, xt.grad.numpy(), 1e-10, "dlogits", floor=1 / x.size)
    loss1, _ = minigan.bce_with_logits(x, 1.0)                   # scalar target
    # hard target 1: -mean log σ(x), through torch's log1p-based logsigmoid (see torch_objective)
    assert_rel(np.asarray(loss1), (-F.logsigmoid(xt)).mean().detach().numpy(), 1e-10, "scalar target", floor=1.0)


def test_bce_keeps_digits_of_small_losses():
    x = np.array([30.0, -40.0])
    loss, dx = minigan.bce_with_logits(x, np.array([1.0, 0.0]))
    exact = (np.log1p(np.exp(-30.0)) + np.log1p(np.exp(-40.0))) / 2
    np.testing.assert_allclose(float(loss), exact, rtol=1e-13)
    np.testing.assert_allclose(dx, [-np.exp(-30.0) / (1 + np.exp(-30.0)) / 2, np.exp(-40.0) / (1 + np.exp(-40.0)) / 2],
                               rtol=1e-13)


def test_saturated_logits_stay_finite_and_exact():
    x = np.array([[-1e4], [-800.0], [0.0], [800.0], [1e4]])
    loss, dx = minigan.bce_with_logits(x, 1.0)
    assert np.isfinite(float(loss)) and np.isfinite(dx).all()
    np.testing.assert_allclose(float(loss), (1e4 + 800 + np.log(2)) / 5, rtol=1e-12)
    np.testing.assert_allclose(dx.ravel(), np.array([-1, -1, -0.5, 0, 0]) / 5, atol=1e-15)


def test_saturated_gradients_keep_their_digits():
    """σ(x) - 1 is evaluated as -σ(-x): at x = 100 the gradient is -e^-100, not 0."""
    r = np.array([[100.0]])
    _, dr, _ = minigan.gan_objective("non_saturating").d_loss(r, -r)
    np.testing.assert_allclose(dr, -np.exp(-100.0), rtol=1e-12)
    _, dg = minigan.gan_objective("non_saturating").g_loss(r)
    np.testing.assert_allclose(dg, -np.exp(-100.0), rtol=1e-12)


@pytest.mark.parametrize("name", minigan.OBJECTIVES)
def test_objective_finite_differences(name):
    rng = np.random.default_rng(0)
    r, f = rng.uniform(0.1, 0.9, (5, 1)) * rng.choice([-1, 1], (5, 1)), rng.uniform(-3, 3, (4, 1))
    f[np.abs(np.abs(f) - 1) < 0.05] = 0.5
    obj = minigan.gan_objective(name)
    assert max(check_loss(obj.d_loss, [r, f])) <= 1e-7
    assert check_loss(obj.g_loss, [f])[0] <= 1e-7


def test_unknown_objective_and_bad_target():
    with pytest.raises(ValueError, match="unknown GAN objective 'wgan'.*hinge"):
        minigan.gan_objective("wgan")
    with pytest.raises(ValueError, match="does not broadcast"):
        minigan.bce_with_logits(np.zeros((4, 1)), np.zeros(3))


def test_float32_objectives_keep_dtype():
    r = np.linspace(-3, 3, 8, dtype=np.float32).reshape(8, 1)
    for name in minigan.OBJECTIVES:
        loss, dr, df = minigan.gan_objective(name).d_loss(r, r)
        assert dr.dtype == np.float32 and df.dtype == np.float32, name
