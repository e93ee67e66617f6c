"""DiffAugment's transforms (minigan.gan.augment): the forward against a torch twin written from the
definitions (per-sample slicing, not minigan's index arithmetic), the backward (the adjoint) against
central differences in float64 and against torch's autograd of that twin, shapes and draws from
hypothesis; the draws' ranges; the recipe key's checks."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minigan.gan import Trainer
from minigan.gan.augment import augment, augment_adjoint, draw_params, parse_augment
from minigan.gradcheck import numerical_vjp, rel_error

from conftest import shared_data
from torch_twin import torch_augment

SPECS = ["translation", "cutout", "translation,cutout"]


@st.composite
def aug_case(draw):
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    return draw(st.sampled_from(SPECS)), (n, c, h, w), draw(st.integers(0, 2 ** 31))


def _drawn(case):
    """-> (transforms, images x, output gradient g) of a drawn case, float64."""
    spec, shape, seed = case
    rng = np.random.default_rng(seed)
    params = draw_params(parse_augment(spec), shape[0], shape[1:], rng)
    return params, rng.standard_normal(shape), rng.standard_normal(shape)


@settings(max_examples=40, deadline=None)
@given(aug_case())
def test_augment_matches_the_torch_twin_forward_and_backward(case):
    params, x, g = _drawn(case)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = torch_augment(tx, params)
    assert rel_error(augment(x, params), ty.detach().numpy()) == 0.0        # it only moves and zeroes values
    ty.backward(torch.from_numpy(g))
    assert rel_error(augment_adjoint(g, params), tx.grad.numpy()) == 0.0


@settings(max_examples=20, deadline=None)
@given(aug_case())
def test_augment_backward_matches_finite_differences(case):
    params, x, g = _drawn(case)
    numeric = numerical_vjp(lambda v: augment(v, params), x, g)
    assert rel_error(augment_adjoint(g, params), numeric) <= 1e-8
    # the adjoint identity <T x, g> = <x, T^T g>, exactly up to rounding
    lhs, rhs = float((augment(x, params) * g).sum()), float((x * augment_adjoint(g, params)).sum())
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


def test_draws_cover_the_papers_ranges_and_nothing_more():
    rng = np.random.default_rng(0)
    p = draw_params(parse_augment("translation,cutout"), 20000, (1, 28, 28), rng)
    s = 4                                           # round(28 / 8)
    assert p["shift"].min() == -s and p["shift"].max() == s
    assert set(np.unique(p["shift"])) == set(range(-s, s + 1))
    one = augment(np.ones((1, 1, 28, 28)), {"corner": np.array([[0, 0]])})
    assert one[0, 0, :14, :14].sum() == 0 and one.sum() == 28 * 28 - 14 * 14      # side round(28 / 2)
    assert p["corner"].min() == -7 and p["corner"].max() == 28 - 7
    x = np.ones((20000, 1, 28, 28))
    kept = augment(x, {"corner": p["corner"]}).mean()
    # the square (side 14, corner uniform over 29 offsets) covers on average sum over offsets of its
    # clipped area / 29^2, per axis: E[clipped length] = sum_{c=-7}^{21} |[c, c+14) & [0, 28)| / 29
    per_axis = np.mean([min(c + 14, 28) - max(c, 0) for c in range(-7, 22)]) / 28
    assert abs((1 - kept) - per_axis ** 2) < 0.01
    q = draw_params(("translation",), 5, (3, 9, 16), np.random.default_rng(1))
    assert set(q) == {"shift"} and q["shift"].shape == (5, 2)
    assert np.abs(q["shift"][:, 0]).max() <= 1 and np.abs(q["shift"][:, 1]).max() <= 2   # round(9/8), round(16/8)
    assert draw_params((), 5, (3, 9, 16), np.random.default_rng(1)) is None
    assert augment(x, None) is x and augment_adjoint(x, None) is x


@pytest.mark.parametrize("spec, message", [
    ("rotation", "unknown augment 'rotation'"),
    ("translation,translation", "names a transform twice"),
    (3, "augment must be a string"),
])
def test_bad_specs_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_augment(spec)


def test_order_and_none():
    assert parse_augment("none") == () and parse_augment("") == ()
    assert parse_augment("cutout, translation") == ("translation", "cutout")


def test_vectors_are_refused():
    with pytest.raises(ValueError, match="augment needs images"):
        draw_params(("cutout",), 4, (2,), np.random.default_rng(0))
    with pytest.raises(ValueError, match="expected images"):
        augment(np.zeros((3, 1, 4, 4)), draw_params(("cutout",), 4, (1, 4, 4), np.random.default_rng(0)))
    with pytest.raises(ValueError, match="2-D points"):
        Trainer("ring8", augment="translation")


def test_trainer_augments_only_when_asked():
    """augment 'none' draws nothing (runs before the key train bit for bit as they did); with it, D's inputs
    differ from the plain images and the step still trains G (its gradient comes back through T^T)."""
    kw = dict(seed=2, batch_size=8, dtype="float64", data_dir=shared_data("mnist"))
    plain, aug = Trainer("dcgan-mnist", **kw), Trainer("dcgan-mnist", augment="translation,cutout", **kw)
    state = plain.rng.bit_generator.state
    assert plain._augment_params(np.zeros((8, 1, 28, 28))) is None
    assert plain.rng.bit_generator.state == state
    g0 = {k: v.copy() for k, v in aug.G.parameters().items()}
    a, b = plain.train_step(), aug.train_step()
    assert a["loss_d"] != b["loss_d"]
    assert max(float(np.abs(aug.G.parameters()[k] - g0[k]).max()) for k in g0) > 0
