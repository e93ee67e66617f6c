"""Optimizer trajectories against torch.optim (float64, <= 1e-12), schedules, clipping, L1/L2."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minigan
from minigan import optim
from minigan.ops import _numba

from conftest import assert_rel, kernels_enabled

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=2e-4, betas=(0.5, 0.999))),
    ("Adam", dict(lr=1e-2, betas=(0.0, 0.9), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=0.01)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, betas=(0.5, 0.99), weight_decay=0.3, amsgrad=True)),
]


@pytest.mark.parametrize("numba_on", [False] + ([True] if _numba.available() else []))
@pytest.mark.parametrize("name,kw", CONFIGS)
@given(seed=st.integers(0, 2**16), steps=st.integers(1, 30))
def test_trajectory_matches_torch(name, kw, seed, steps, numba_on):
    """(Without numba, Adam steps its tensors together in one flat buffer: Adam._update_flat.)"""
    with kernels_enabled(_numba, numba_on):
        _trajectory_matches_torch(name, kw, seed, steps)


def _trajectory_matches_torch(name, kw, seed, steps):
    rng = np.random.default_rng(seed)
    params = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    opt = getattr(minigan, name)(**kw)
    topt = getattr(torch.optim, name)(list(tparams.values()), **kw)
    for t in range(steps):
        grads = {k: rng.standard_normal(v.shape) * (10.0 ** rng.integers(-4, 2)) for k, v in params.items()}
        if t % 7 == 3:
            grads.pop("b")            # a parameter without a gradient is skipped, as in torch
        opt.step(params, grads)
        for k, p in tparams.items():
            p.grad = torch.tensor(grads[k]) if k in grads else None
        topt.step()
    for k in params:
        assert_rel(params[k], tparams[k].detach().numpy(), 1e-12, f"{name} {kw} parameter {k}")


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    p1 = {"w": rng.standard_normal(6)}
    p2 = {"w": p1["w"].copy()}
    a, b = minigan.Adam(lr=0.01, amsgrad=True), minigan.Adam(lr=0.5)
    gs = [{"w": rng.standard_normal(6)} for _ in range(6)]
    for g in gs[:3]:
        a.step(p1, g)                         # b never steps: all it knows comes from a's state dict
    b.load_state_dict(a.state_dict())
    p2["w"][...] = p1["w"]
    assert b.lr == 0.01 and b.amsgrad is True
    for g in gs[3:]:
        a.step(p1, g)
        b.step(p2, g)
    np.testing.assert_array_equal(p1["w"], p2["w"])


class _OneAtATime:
    """The oracle of Adam's flat path: the same optimizer stepping one tensor at a time."""
    def _update_all(self, items):
        optim.Optimizer._update_all(self, items)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,kw", [(optim.Adam, dict(lr=1e-3, betas=(0.5, 0.9))),
                                    (optim.Adam, dict(lr=1e-2, weight_decay=0.1)),
                                    (optim.AdamW, dict(lr=1e-2, betas=(0.5, 0.99), weight_decay=0.3))])
def test_adam_flat_path_is_bit_exact(cls, kw, dtype):
    """Numpy without numba: Adam steps all tensors of a step in flat buffers.  Bit for bit the
    tensor-at-a-time path, with a tensor that never has a gradient (frozen: left alone, as torch does),
    a state dict round trip into a new optimizer (its state copied into new buffers), and a channels-last
    weight; each exp_avg is then a view of the buffer."""
    oracle_cls = type("OneAtATime" + cls.__name__, (_OneAtATime, cls), {})
    rng = np.random.default_rng(7)
    p0 = {"w": rng.standard_normal((4, 3, 2, 5)).astype(dtype).transpose(0, 3, 1, 2),  # channels-last memory
          "b": rng.standard_normal(5).astype(dtype), "v": rng.standard_normal((6, 2)).astype(dtype)}
    grads = [{k: (rng.standard_normal(v.shape) * 10.0 ** rng.uniform(-6, 1, v.shape)).astype(dtype)
              for k, v in p0.items()} for _ in range(9)]
    for g in grads:
        g.pop("v")
    with kernels_enabled(_numba, False):
        params = {k: v.copy(order="K") for k, v in p0.items()}        # (K: w keeps its channels-last memory)
        ref = {k: v.copy(order="K") for k, v in p0.items()}
        assert not params["w"].flags.c_contiguous
        opt, oracle = cls(**kw), oracle_cls(**kw)
        for i, g in enumerate(grads):
            if i == 6:                                # resume: a new optimizer from the state dict
                opt, state = cls(**kw), opt.state_dict()
                opt.load_state_dict(state)
            opt.step(params, g)
            oracle.step(ref, g)
            for k in p0:
                np.testing.assert_array_equal(params[k], ref[k], err_msg=f"step {i}, {k}")
        assert opt._flat is not None and oracle._flat is None and opt._flat["names"] == ("w", "b")
        np.testing.assert_equal(opt.state_dict(), oracle.state_dict())
        np.testing.assert_array_equal(params["v"], p0["v"])
        for k in ("w", "b"):
            for key, flat in (("exp_avg", opt._flat["m"]), ("exp_avg_sq", opt._flat["v"])):
                assert np.shares_memory(opt.state[k][key], flat)


@given(shapes=st.lists(st.lists(st.integers(0, 5), min_size=0, max_size=3), min_size=2, max_size=6),
       seed=st.integers(0, 2**16), adamw=st.booleans())
def test_adam_flat_path_is_bit_exact_on_any_shapes(shapes, seed, adamw):
    """Hypothesis draws the tensors (scalars and empty ones among them): the flat path equals the
    tensor-at-a-time path bit for bit over three steps."""
    cls = optim.AdamW if adamw else optim.Adam
    rng = np.random.default_rng(seed)
    p0 = {f"p{i}": rng.standard_normal(shape).astype(np.float32) for i, shape in enumerate(shapes)}
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in p0.items()} for _ in range(3)]
    oracle_cls = type("OneAtATime" + cls.__name__, (_OneAtATime, cls), {})
    with kernels_enabled(_numba, False):
        params, ref = {k: v.copy() for k, v in p0.items()}, {k: v.copy() for k, v in p0.items()}
        opt, oracle = cls(lr=1e-2, weight_decay=0.1), oracle_cls(lr=1e-2, weight_decay=0.1)
        for g in grads:
            opt.step(params, g)
            oracle.step(ref, g)
        assert opt._flat is not None
        for k in p0:
            np.testing.assert_array_equal(params[k], ref[k])
            assert params[k].shape == p0[k].shape


def test_adam_flat_path_steps_aside_where_it_does_not_apply():
    """amsgrad, mixed dtypes, tensors at different step counts and one tensor alone go one at a time."""
    rng = np.random.default_rng(8)
    with kernels_enabled(_numba, False):
        for opt, params in [(optim.Adam(amsgrad=True), {"a": rng.standard_normal(3), "b": rng.standard_normal(2)}),
                            (optim.Adam(), {"a": rng.standard_normal(3),
                                            "b": rng.standard_normal(2).astype(np.float32)}),
                            (optim.Adam(), {"a": rng.standard_normal(3)})]:
            opt.step(params, {k: np.ones_like(v) for k, v in params.items()})
            assert opt._flat is None
        opt, params = optim.Adam(), {"a": rng.standard_normal(3), "b": rng.standard_normal(2)}
        opt.step(params, {"a": np.ones(3)})                       # b: no gradient, still at step 0
        opt.step(params, {"a": np.ones(3), "b": np.ones(2)})      # steps 2 and 1: one at a time
        assert opt._flat is None and opt.state["a"]["step"] == 2 and opt.state["b"]["step"] == 1
        opt.step(params, {"a": np.ones(3), "b": np.ones(2)})
        opt.step(params, {"a": np.ones(3), "b": np.ones(2)})      # (3, 2) then (4, 3): still apart
        assert opt._flat is None


def test_step_rejects_unknown_and_misshapen_grads():
    opt = minigan.SGD(lr=0.1)
    with pytest.raises(KeyError, match="unknown parameters"):
        opt.step({"w": np.zeros(3)}, {"v": np.zeros(3)})
    with pytest.raises(ValueError, match="shape"):
        opt.step({"w": np.zeros(3)}, {"w": np.zeros(4)})
    with pytest.raises(ValueError, match="nesterov"):
        minigan.SGD(lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        minigan.Adam(betas=(0.9, 1.5))


@pytest.mark.parametrize("sched,kw", [("StepLR", dict(step_size=3, gamma=0.5)),
                                      ("ExponentialLR", dict(gamma=0.9)),
                                      ("CosineAnnealingLR", dict(T_max=7, eta_min=1e-4))])
def test_schedules_match_torch(sched, kw):
    opt = minigan.Adam(lr=0.1)
    s = getattr(minigan, sched)(opt, **kw)
    tp = torch.zeros(1, requires_grad=True)
    topt = torch.optim.Adam([tp], lr=0.1)
    ts = getattr(torch.optim.lr_scheduler, sched)(topt, **kw)
    for _ in range(20):
        assert math.isclose(opt.lr, topt.param_groups[0]["lr"], rel_tol=1e-12, abs_tol=1e-15)
        topt.step()
        ts.step()
        s.step()
    s2 = getattr(minigan, sched)(minigan.Adam(lr=0.1), **kw)
    s2.load_state_dict(s.state_dict())
    assert s2.optimizer.lr == opt.lr


def test_clip_grad_norm_matches_torch():
    rng = np.random.default_rng(0)
    for max_norm, norm_type in [(0.5, 2.0), (100.0, 2.0), (0.3, 1.0), (0.2, math.inf)]:
        grads = {"a": rng.standard_normal((3, 3)), "b": rng.standard_normal(4)}
        ts = [torch.zeros(3, 3, dtype=torch.float64, requires_grad=True), torch.zeros(4, dtype=torch.float64, requires_grad=True)]
        for t, g in zip(ts, grads.values()):
            t.grad = torch.tensor(g.copy())
        total = minigan.clip_grad_norm(grads, max_norm, norm_type)
        ttotal = torch.nn.utils.clip_grad_norm_(ts, max_norm, norm_type)
        assert math.isclose(total, float(ttotal), rel_tol=1e-12)
        for t, g in zip(ts, grads.values()):
            assert_rel(g, t.grad.numpy(), 1e-12, f"clipped grads {max_norm} {norm_type}")


def test_clip_value_and_regularisers():
    g = {"a": np.array([-3.0, 0.5, 2.0])}
    minigan.clip_grad_value(g, 1.0)
    np.testing.assert_array_equal(g["a"], [-1.0, 0.5, 1.0])
    p = {"w": np.array([-2.0, 0.0, 3.0])}
    loss, grads = minigan.l1_regularization(p, 0.1)
    assert math.isclose(loss, 0.5) and np.allclose(grads["w"], [-0.1, 0.0, 0.1])
    loss, grads = minigan.l2_regularization(p, 0.1, grads={"w": np.ones(3)})
    assert math.isclose(loss, 0.65) and np.allclose(grads["w"], [0.8, 1.0, 1.3])


def test_sgd_weight_decay_equals_l2_regularization():
    rng = np.random.default_rng(3)
    p1 = {"w": rng.standard_normal(5)}
    p2 = {"w": p1["w"].copy()}
    g = rng.standard_normal(5)
    minigan.SGD(lr=0.1, weight_decay=0.2).step(p1, {"w": g})
    _, grads = minigan.l2_regularization(p2, 0.2, grads={"w": g.copy()})
    minigan.SGD(lr=0.1).step(p2, grads)
    np.testing.assert_allclose(p1["w"], p2["w"], rtol=1e-15)


def test_global_norm_empty_and_inf():
    assert optim.global_norm([]) == 0.0
    assert optim.global_norm([np.array([1.0, -5.0])], math.inf) == 5.0
