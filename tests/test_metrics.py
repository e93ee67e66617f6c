"""Metrics on cases with known answers, the shipped MNIST evaluator, `minigan eval`."""
import json
import math
import re

import numpy as np
import pytest

from minigan import data, metrics
from minigan.metrics import features
from minigan.metrics.classifier import WEIGHTS, MnistClassifier

from conftest import run_minigan, shared_data


def test_perfect_sampler_covers_every_mode():
    for mix in (data.ring8(), data.grid25()):
        x, _ = mix.sample(2500, np.random.default_rng(0))
        m = metrics.mode_coverage(x, mix.centers, mix.std)
        k = len(mix.centers)
        assert m["modes"] == k
        assert m["hq_fraction"] > 0.98          # P(|N(0, s^2 I_2)| < 3s) = 1 - e^-4.5 = 0.989
        assert m["reverse_kl"] < 0.02


def test_collapsed_sampler_scores_one_mode():
    mix = data.ring8()
    x = mix.centers[3] + 0.001 * np.random.default_rng(0).standard_normal((2500, 2))
    m = metrics.mode_coverage(x, mix.centers, mix.std)
    assert m["modes"] == 1 and m["hq_fraction"] == 1.0
    assert math.isclose(m["reverse_kl"], math.log(8), rel_tol=1e-12)
    far = metrics.mode_coverage(np.full((10, 2), 50.0), mix.centers, mix.std)
    assert far["modes"] == 0 and far["hq_fraction"] == 0.0 and far["reverse_kl"] == float("inf")


def test_fid_known_answers():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3000, 5)) @ rng.standard_normal((5, 5))
    assert metrics.fid(a, a) < 1e-8
    assert abs(metrics.fid(a, a[rng.permutation(len(a))]) - metrics.fid(a, a)) < 1e-8
    # diagonal Gaussians: FID = |mu1 - mu2|^2 + sum (sqrt(v1) - sqrt(v2))^2
    mu1, mu2, v1, v2 = np.array([0.0, 1.0]), np.array([2.0, -1.0]), np.array([1.0, 4.0]), np.array([9.0, 0.25])
    expect = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert math.isclose(features.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)), expect, rel_tol=1e-12)
    b = a + 3.0
    assert math.isclose(metrics.fid(a, b), 5 * 9.0, rel_tol=1e-9)


def test_precision_recall_and_inception_score_known_answers():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 8))
    assert features.precision_recall(a, a.copy()) == (1.0, 1.0)
    p, r = features.precision_recall(a, a[:50] * 0.01)           # a tight blob inside the real cloud
    assert p == 1.0 and r < 0.2
    assert math.isclose(features.inception_score(np.eye(10)[np.arange(1000) % 10]), 10.0, rel_tol=1e-6)
    assert math.isclose(features.inception_score(np.eye(10)[np.zeros(100, int)]), 1.0, rel_tol=1e-6)
    assert features.kl_to_uniform(np.arange(1000) % 10, 10) == 0.0
    assert math.isclose(features.kl_to_uniform(np.zeros(5, int), 10), math.log(10))


def test_shipped_classifier_accuracy_on_held_out_digits():
    images, labels, _ = data.load_mnist(shared_data("mnist"))
    clf = MnistClassifier()
    x = images[8000:].astype(np.float32)[:, None] / 127.5 - 1      # never seen in training
    acc = float((clf.predict(x) == labels[8000:]).mean())
    assert acc >= 0.985, acc
    assert clf.meta["accuracy"] == pytest.approx(acc, abs=1e-9)
    assert clf.features(x[:7]).shape == (7, 128)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        clf.features(np.zeros((2, 28, 28), np.float32))


def test_classifier_weights_ship_with_the_package():
    assert WEIGHTS.exists() and WEIGHTS.stat().st_size < 2_000_000


def test_eval_cli_on_ring8_and_mnist_runs(tmp_path):
    mnist = str(shared_data("mnist"))
    assert run_minigan("train", "--steps", "20", "--out", "r", "--quiet", cwd=tmp_path).returncode == 0
    r = run_minigan("eval", "r", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"modes", "hq_fraction", "reverse_kl"} <= set(out) and 0 <= out["hq_fraction"] <= 1
    assert (tmp_path / "r" / "curves.png").exists() and (tmp_path / "r" / "eval_samples.png").exists()
    r = run_minigan("train", "--preset", "mlp-mnist", "--steps", "3", "--batch-size", "16", "--out", "m",
                    "--data-dir", mnist, "--quiet", "--set", "select_samples=300", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.search(r"mlp-mnist, step 3: FID [\d.]+, digit KL [\d.]+ \((EMA of G|raw G), chosen by measurement "
                     r"over the (raw G|EMA of G): FID [\d.]+, digit KL [\d.]+\)", r.stderr), r.stderr
    r = run_minigan("eval", "m", "--json", "--n", "300", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"fid", "inception_score", "precision", "recall", "floor"} <= set(out)
    assert out["floor"]["fid"] < out["fid"]                      # 3 steps of training is far from real
    assert len(r.stdout.strip().splitlines()) == 1


def test_summarize_draws_gives_each_number_its_mean_and_sample_std():
    draws = [{"preset": "x", "fid": 10.0, "ema_g": {"fid": 1.0, "kl": math.inf}, "floor": {"fid": 4.0}, "curves": "a"},
             {"preset": "x", "fid": 12.0, "ema_g": {"fid": 2.0, "kl": 0.5}, "floor": {"fid": 4.0}, "curves": "b"},
             {"preset": "x", "fid": 14.0, "ema_g": {"fid": 6.0, "kl": 0.5}, "floor": {"fid": 5.0}, "curves": "c"}]
    s = metrics.summarize_draws(draws)
    assert s["mean"]["fid"] == pytest.approx(12.0) and s["std"]["fid"] == pytest.approx(2.0)      # ddof 1
    assert s["mean"]["ema_g"]["fid"] == pytest.approx(3.0) and s["std"]["ema_g"]["fid"] == pytest.approx(np.sqrt(7))
    assert s["mean"]["floor"]["fid"] == pytest.approx(13 / 3) and math.isinf(s["mean"]["ema_g"]["kl"])
    assert "preset" not in s["mean"] and "curves" not in s["std"]                 # text is left out
    one = metrics.summarize_draws(draws[:1])
    assert one["mean"]["fid"] == 10.0 and one["std"]["fid"] == 0.0
    with pytest.raises(ValueError, match="no results"):
        metrics.summarize_draws([])


def test_eval_draws_average_the_seeds_each_scored_alone(tmp_path):
    r = run_minigan("train", "--preset", "mlp-mnist", "--steps", "3", "--batch-size", "16", "--out", "r", "--data-dir",
                    str(shared_data("mnist")), "--quiet", "--set", "select_samples=0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_minigan("eval", "r", "--json", "--seed", "3", "--draws", "3", "--n", "300", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    alone = []
    for seed in (3, 4, 5):
        r = run_minigan("eval", "r", "--json", "--seed", str(seed), "--n", "300", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        alone.append(json.loads(r.stdout))
    assert out["draws"]["seeds"] == [3, 4, 5]
    assert out["fid"] == alone[0]["fid"]                                         # the top level: --seed's draw
    fid = [a["fid"] for a in alone]
    assert len(set(fid)) == 3                                                   # the draws differ ...
    assert out["draws"]["mean"]["fid"] == pytest.approx(np.mean(fid))           # ... and are averaged
    assert out["draws"]["std"]["fid"] == pytest.approx(np.std(fid, ddof=1))
    floor = [a["floor"]["fid"] for a in alone]                                  # (other real subsets too)
    assert out["draws"]["mean"]["floor"]["fid"] == pytest.approx(np.mean(floor)) and len(set(floor)) == 3


def test_stacked_eval_counts_modes(tmp_path):
    from minigan.gan.trainer import Trainer

    t = Trainer("dcgan-stacked", seed=0, steps=1, batch_size=4, data_dir=shared_data("mnist"), select_samples=0)
    t.run(progress=False)
    out = metrics.evaluate(t, n=500)
    assert 0 < out["modes"] <= 1000 and out["kl"] >= 0 and out["floor"]["modes"] > 350


def test_evaluation_during_training_goes_into_the_log(tmp_path):
    from minigan.gan.trainer import Trainer

    Trainer("ring8", seed=0, out_dir=tmp_path, steps=4, batch_size=16, eval_every=2, eval_samples=200).run(progress=False)
    recs = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    evals = [r for r in recs if "eval" in r]
    assert [r["step"] for r in evals] == [2, 4] and "modes" in evals[0]["eval"]


def test_score_mnist_samples_gives_what_evaluate_gives():
    """Any generator's samples are scored against the same real images as a run's evaluate."""
    from minigan.gan.trainer import Trainer

    t = Trainer("mlp-mnist", seed=0, steps=2, batch_size=16, data_dir=shared_data("mnist"), select_samples=0)
    t.run(progress=False)
    out = metrics.evaluate(t, n=300, seed=3)
    fake = t.sample(300, seed=3, ema=out["sampler"] == "ema")
    got = metrics.score_mnist_samples(fake, t.host_images, n=300, seed=3)
    assert got["n"] == 300 and got["floor"] == out["floor"]
    assert {k: got[k] for k in ("fid", "precision", "recall", "digit_kl")} == \
        {k: out[k] for k in ("fid", "precision", "recall", "digit_kl")}
    pick = np.random.default_rng(9).permutation(len(t.host_images))[:300]     # real digits score near the floor
    real = t.host_images[pick].astype(np.float32)[:, None] / 127.5 - 1
    near = metrics.score_mnist_samples(real, t.host_images, n=300, seed=3)
    assert near["fid"] < 2 * near["floor"]["fid"] < out["fid"]
    with pytest.raises(ValueError, match="look scaled to"):
        metrics.score_mnist_samples((real + 1) / 2, t.host_images, n=300)
    with pytest.raises(ValueError, match="299 samples given, 300 needed"):
        metrics.score_mnist_samples(real[:299], t.host_images, n=300)
    with pytest.raises(ValueError, match="n must be an int >= 2 with 2n <="):
        metrics.score_mnist_samples(real, t.host_images[:500], n=300)
    with pytest.raises(ValueError, match="images must be uint8 MNIST digits"):
        metrics.score_mnist_samples(real, real, n=100)


def test_the_real_reference_passes_the_classifier_once_per_images_n_seed_and_weights(monkeypatch):
    """evaluate / score_mnist_samples keep the last few real references (two classifier passes and the
    floor): a repeat call passes only the samples, and anything that changes the reference (a pixel, n,
    the seed, a weight) computes it anew; the numbers are the uncached ones to the bit."""
    import importlib
    ev = importlib.import_module("minigan.metrics.evaluate")     # metrics.evaluate is the function
    monkeypatch.setattr(ev, "_REFERENCES", type(ev._REFERENCES)())
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(240, 28, 28), dtype=np.uint8)
    fake = rng.uniform(-1, 1, size=(100, 1, 28, 28)).astype(np.float32)
    clf = MnistClassifier(batch=64)
    passes = []
    real_pass = clf.features_and_logits
    monkeypatch.setattr(clf, "features_and_logits", lambda x: passes.append(len(x)) or real_pass(x))

    def score(imgs=images, n=50, seed=1):
        before = len(passes)
        out = metrics.score_mnist_samples(fake, imgs, n=n, seed=seed, classifier=clf)
        return out, len(passes) - before

    first, k = score()
    assert k == 3                                   # two real halves and the samples
    again, k = score()
    assert k == 1 and again == first
    again["floor"]["fid"] = -1.0                    # a caller's dict is its own
    assert score()[0]["floor"] == first["floor"]
    a, _ = ev._real_reference(images, 50, 1, clf)
    assert not (a[0].flags.writeable or a[1].flags.writeable)
    monkeypatch.setattr(ev, "_REFERENCES", type(ev._REFERENCES)())
    assert score()[0] == first                      # computed anew: the same numbers
    edited = images.copy()
    edited[7, 3, 4] ^= 1
    assert [score(**kw)[1] for kw in ({"imgs": edited}, {"n": 60}, {"seed": 2}, {})] == [3, 3, 3, 1]
    assert len(ev._REFERENCES) == ev.REFERENCES_KEPT
    w = clf.net.parameters()["0.weight"]
    w[0, 0, 0, 0] += 1e-3                            # in place: the same arrays, other weights
    assert score()[1] == 3


@pytest.mark.parametrize("preset", ["grid25", "dcgan-mnist", "resnet-mnist", "cgan-mnist"])
def test_evaluate_every_other_preset(preset):
    from minigan.gan.trainer import Trainer

    t = Trainer(preset, seed=0, steps=1, batch_size=4, data_dir=shared_data("mnist"), select_samples=0)
    t.run(progress=False)
    out = metrics.evaluate(t, n=200)
    keys = {"modes", "hq_fraction", "reverse_kl"} if t.mixture is not None else \
        {"fid", "inception_score", "precision", "recall", "digit_kl", "floor"}
    assert keys <= set(out), out
