"""Jacobian truncation (minigan.gan.truncation): the per-sample Frobenius norm of dG/dz against
central differences (float64) and against torch.func.jacrev, on both of its paths (backward passes
when the output is the smaller side, tangent passes otherwise), shapes drawn by hypothesis; the
rejection sampler on a G whose bridge is known in closed form; the trainer's sampling, evaluation,
recipe checks and old runs."""
import math
from statistics import NormalDist

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan
from minigan import nn
from minigan.gan import Trainer
from minigan.gan.trainer import SAMPLE_CHUNK
from minigan.gan.truncation import jacobian_norms, truncated_sample, truncation_threshold
from minigan.metrics import evaluate

from conftest import drop_recipe_key, shift_running_stats, torch_net_like

FD_TOL, TORCH_TOL = 1e-7, 1e-10


def _g(n_in, hidden, out_shape, batchnorm, seed):
    """An MLP G (tanh, optionally BatchNorm1d with running statistics away from their start) whose
    output is reshaped to ``out_shape``."""
    layers = [nn.Linear(n_in, hidden)] + ([nn.BatchNorm1d(hidden)] if batchnorm else []) + \
             [nn.Tanh(), nn.Linear(hidden, int(np.prod(out_shape))), nn.Reshape(*out_shape)]
    net = minigan.Sequential(*layers, dtype=np.float64, seed=seed)
    shift_running_stats(net)
    return net


def _fd_norms(net, z, n_inputs, h=1e-5):
    """||dG/dz_{:n_inputs}||_F per sample by central differences, one input column at a time."""
    sq = np.zeros(len(z))
    for j in range(n_inputs):
        e = np.zeros_like(z)
        e[:, j] = h
        d = (net(z + e) - net(z - e)).reshape(len(z), -1) / (2 * h)
        sq += (d ** 2).sum(axis=1)
    return np.sqrt(sq)


cases = st.tuples(st.integers(1, 6), st.integers(1, 5), st.sampled_from([(1,), (2,), (7,), (2, 3), (1, 2, 2)]),
                  st.booleans(), st.integers(1, 5), st.integers(0, 2**16))


@settings(max_examples=30, deadline=None)
@given(cases)
def test_jacobian_norms_match_central_differences(case):
    n_in, hidden, out_shape, batchnorm, batch, seed = case
    net = _g(n_in, hidden, out_shape, batchnorm, seed)
    z = np.random.default_rng(seed).standard_normal((batch, n_in))
    for n_inputs in sorted({n_in, max(1, n_in - 1)}):
        y, norms = jacobian_norms(net, z, n_inputs)
        np.testing.assert_array_equal(y, net(z))
        assert norms.shape == (batch,) and norms.dtype == np.float64
        assert minigan.gradcheck.rel_error(norms, _fd_norms(net, z, n_inputs)) <= FD_TOL


@settings(max_examples=20, deadline=None)
@given(cases)
def test_jacobian_norms_match_torch_jacrev(case):
    n_in, hidden, out_shape, batchnorm, batch, seed = case
    net = _g(n_in, hidden, out_shape, batchnorm, seed)
    tnet = torch_net_like(net).eval()
    z = np.random.default_rng(seed + 1).standard_normal((batch, n_in))
    # torch: each sample's full Jacobian (its own forward, eval mode), then the norm over its first columns
    for n_inputs in sorted({n_in, max(1, n_in - 1)}):
        expected = [torch.linalg.norm(torch.func.jacrev(lambda v: tnet(v[None])[0])(torch.from_numpy(zi))
                                      .reshape(-1, n_in)[:, :n_inputs]).item() for zi in z]
        assert minigan.gradcheck.rel_error(jacobian_norms(net, z, n_inputs)[1], np.array(expected)) <= TORCH_TOL


def test_both_passes_agree_and_bad_noise_is_refused():
    # 3 outputs from 3 inputs takes the backward passes; 4 from 3 the tangent ones: the same map, padded
    net = _g(3, 4, (3,), True, 0)
    wide = minigan.Sequential(*net.layers[:-2], nn.Linear(4, 4), dtype=np.float64, seed=0)
    wide.load_state_dict({**{k: v for k, v in net.state_dict().items() if not k.startswith("3.")},
                          "3.weight": np.vstack([net.state_dict()["3.weight"], np.zeros((1, 4))]),
                          "3.bias": np.append(net.state_dict()["3.bias"], 0.0)})
    z = np.random.default_rng(1).standard_normal((6, 3))
    np.testing.assert_allclose(jacobian_norms(wide, z)[1], jacobian_norms(net, z)[1], rtol=1e-13)
    with pytest.raises(ValueError, match=r"shape \(N, n\)"):
        jacobian_norms(net, z[0])
    with pytest.raises(ValueError, match="n_inputs must be in 1..3"):
        jacobian_norms(net, z, 4)


def _step_g(a):
    """y = (tanh(a z_0), 0): two point modes at (+-1, 0) and a bridge between them near z_0 = 0,
    where ||dG/dz|| = a sech^2(a z_0) is largest."""
    net = minigan.Sequential(nn.Linear(2, 1), nn.Tanh(), nn.Linear(1, 2), dtype=np.float64)
    net.load_state_dict({"0.weight": np.array([[a, 0.0]]), "0.bias": np.zeros(1),
                         "2.weight": np.array([[1.0], [0.0]]), "2.bias": np.zeros(2)})
    return net


@pytest.mark.parametrize("q", [0.02, 0.1, 0.3])
def test_truncation_removes_the_bridge_of_a_known_g(q):
    net, rng = _step_g(20.0), np.random.default_rng(7)
    calib = np.random.default_rng(0).standard_normal((20000, 2))
    tau = truncation_threshold(jacobian_norms(net, calib)[1], q)
    # the rejected noise is |z_0| < c, c the q-quantile of |z_0| over the calibration noise (near
    # Phi^-1(1/2 + q/2)), so tau = a sech^2(a c) and every kept sample has |y_0| >= tanh(a c)
    c = np.quantile(np.abs(calib[:, 0]), q)
    assert tau == pytest.approx(20 / math.cosh(20 * c) ** 2, rel=0.01)
    assert abs(c - NormalDist().inv_cdf(0.5 + q / 2)) < 5 * math.sqrt(q * (1 - q) / 20000) / (2 * NormalDist().pdf(c))
    first = rng.standard_normal((5000, 2))
    draws = iter([first])
    x = truncated_sample(net, lambda idx: next(draws, None) if len(idx) == 5000 else rng.standard_normal((len(idx), 2)),
                         5000, tau)
    assert np.abs(x[:, 0]).min() >= math.tanh(20 * c) - 0.02
    untruncated = net(first)
    kept = jacobian_norms(net, first)[1] <= tau
    np.testing.assert_array_equal(x[kept], untruncated[kept])          # a kept first draw is the untruncated sample
    assert np.abs(untruncated[:, 0]).min() < math.tanh(20 * c) - 0.1    # (which did have bridge points)
    assert abs((~kept).mean() - q) < 4 * math.sqrt(q * (1 - q) / 5000) + 0.01


def test_truncation_threshold_and_sampler_errors():
    assert truncation_threshold([1.0, 2.0], 0) == math.inf
    norms = np.arange(1000.0)
    assert np.mean(norms > truncation_threshold(norms, 0.05)) == pytest.approx(0.05, abs=0.002)
    for bad in (1.0, -0.1, True, "0.1", float("nan")):
        with pytest.raises(ValueError, match=r"truncate must be a fraction in \[0, 1\)"):
            truncation_threshold(norms, bad)
    net = _step_g(20.0)
    with pytest.raises(RuntimeError, match="found no noise"):     # a threshold below every norm: nothing is kept
        truncated_sample(net, lambda idx: np.random.default_rng(0).standard_normal((len(idx), 2)), 10, -1.0,
                         max_rounds=3)


def test_truncated_sample_in_chunks_is_the_sample_of_one_pass(monkeypatch):
    """chunk bounds the inputs of each Jacobian pass (memory); the noise of each round is drawn at once, so
    the samples and the positions redrawn are those of one pass over all of them (float64)."""
    import minigan.gan.truncation as truncation
    net = _g(3, 8, (2, 2), True, seed=5)
    tau = truncation_threshold(jacobian_norms(net, np.random.default_rng(1).standard_normal((500, 3)))[1], 0.3)

    def run(chunk):
        rng, rounds = np.random.default_rng(9), []

        def draw(idx):
            rounds.append(len(idx))
            return rng.standard_normal((len(idx), 3))
        return truncated_sample(net, draw, 23, tau, chunk=chunk), rounds
    whole, whole_rounds = run(None)
    sizes = []

    def spy(net, z, n_inputs=None):
        sizes.append(len(z))
        return jacobian_norms(net, z, n_inputs)
    monkeypatch.setattr(truncation, "jacobian_norms", spy)
    chunked, rounds = run(5)
    assert rounds == whole_rounds and len(rounds) > 1 and rounds[0] == 23       # the same draws, redraws
    assert sizes[:5] == [5, 5, 5, 5, 3] and max(sizes) <= 5
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12)
    assert truncated_sample(net, lambda idx: np.zeros((len(idx), 3)), 0, tau, chunk=5).shape == (0, 2, 2)
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(ValueError, match="chunk must be an int >= 1"):
            truncated_sample(net, lambda idx: np.zeros((len(idx), 3)), 4, tau, chunk=bad)


@pytest.fixture(scope="module")
def ring8():
    """A briefly trained ring8 run of the preset's own recipe (truncate 0.1)."""
    t = Trainer("ring8", seed=3, steps=300, eval_every=0, penalty="none")
    t.run(progress=False)
    return t


def test_trainer_samples_truncated_by_its_recipe(ring8):
    t, q = ring8, ring8.recipe["truncate"]
    assert q == 0.1
    net = t.sampling_net() if t.sampler == "ema" else t.G              # the net the run samples from
    z = np.random.default_rng(11).standard_normal((4000, 16)).astype(np.float32)
    plain = t.sample(4000, seed=11, truncate=0)
    # truncate 0: the sampler of before (up to float32 rounding: sample() runs G in chunks of SAMPLE_CHUNK, and
    # BLAS may block a 1,000-row product otherwise than a 4,000-row one)
    np.testing.assert_allclose(plain, np.asarray(net(z), dtype=np.float64), rtol=1e-5, atol=1e-6)
    x = t.sample(4000, seed=11)
    tau = t.truncation_threshold()
    # both samplers run G on the same chunks of SAMPLE_CHUNK inputs: a kept first draw is bit for bit the
    # untruncated sample
    kept = np.concatenate([jacobian_norms(net, z[lo:lo + SAMPLE_CHUNK], 16)[1]
                           for lo in range(0, 4000, SAMPLE_CHUNK)]) <= tau
    np.testing.assert_array_equal(x[kept], plain[kept])
    assert not (x[~kept] == plain[~kept]).all(axis=1).any()          # each rejected position was redrawn
    assert abs((~kept).mean() - q) < 0.015
    np.testing.assert_array_equal(x, t.sample(4000, seed=11))         # reproducible for a seed
    assert t.sample(0).shape == (0, 2)                                  # (an empty request: no pass fails)
    assert t.truncation_threshold(0.2) < tau                           # a larger q, a lower threshold
    with pytest.raises(ValueError, match="truncate must be a fraction"):
        t.sample(10, truncate=1.5)


def test_evaluate_reports_the_untruncated_sampler_beside(ring8):
    t = ring8
    m = evaluate(t, seed=5)
    assert m["truncate"] == 0.1
    assert set(m["untruncated"]) == {"modes", "hq_fraction", "reverse_kl"}
    x = t.sample(2500, seed=5, truncate=0)
    from minigan.metrics.mixtures import mode_coverage
    assert m["untruncated"]["hq_fraction"] == mode_coverage(x, t.mixture.centers, t.mixture.std)["hq_fraction"]
    q, t.recipe["truncate"] = t.recipe["truncate"], 0.0
    try:
        plain = evaluate(t, seed=5)
    finally:
        t.recipe["truncate"] = q
    assert "untruncated" not in plain and "truncate" not in plain
    assert {k: plain[k] for k in ("modes", "hq_fraction", "reverse_kl")} == m["untruncated"]


@pytest.mark.parametrize("bad", [1, 1.2, -0.05, True, "0.05"])
def test_recipe_refuses_a_bad_truncate(bad):
    with pytest.raises(ValueError, match="truncate must be a fraction in"):
        Trainer("ring8", truncate=bad)


def test_a_run_saved_before_truncate_existed_samples_untruncated(tmp_path):
    t = Trainer("ring8", seed=1, steps=2, eval_every=0, out_dir=tmp_path, penalty="none")
    t.run(progress=False)
    drop_recipe_key(tmp_path, "truncate")
    old = Trainer.resume(tmp_path, repair_log=False)
    assert old.recipe["truncate"] == 0.0
    np.testing.assert_array_equal(old.sample(50, seed=2), t.sample(50, seed=2, truncate=0))
