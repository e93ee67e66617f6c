"""Trainer: exact resume, atomic checkpoints, the NaN guard, logs and pictures, every preset runs."""
import json

import numpy as np
import pytest

import minigan
from minigan import checkpoint
from minigan.gan import trainer as trainer_mod
from minigan.gan.models import MIXTURE_SELECT, PRESETS, recipe_for
from minigan.gan.trainer import CheckpointError, Trainer, TrainingDiverged

from conftest import drop_recipe_key, shared_data

# every piece of state in play: dropout masks, EMA, a schedule, n_critic, clipping, L1/L2
BUSY = dict(steps=12, batch_size=32, d_dropout=0.2, ema=0.9, lr_schedule="cosine", n_critic=2,
            grad_clip=5.0, l1=1e-5, l2=1e-4, sample_every=4, checkpoint_every=4)


def _arrays(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _assert_identical(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("preset,extra", [("ring8", BUSY),
                                          ("ring8", dict(BUSY, penalty="wgan_gp", penalty_every=3, spectral_norm=True)),
                                          ("grid25", dict(steps=6, batch_size=16, penalty="r1", checkpoint_every=3)),
                                          ("dcgan-mnist", dict(steps=4, batch_size=4, sample_every=2,
                                                               checkpoint_every=2, d_dropout=0.3, select_samples=0))])
def test_resume_is_bit_identical(tmp_path, preset, extra, backend):
    """On every available backend (cupy: needs deterministic GPU kernels too)."""
    kw = dict(data_dir=shared_data("mnist")) if preset != "ring8" else {}
    steps = extra["steps"]
    Trainer(preset, seed=3, backend=backend, out_dir=tmp_path / "straight", **kw, **extra).run(progress=False)
    Trainer(preset, seed=3, backend=backend, out_dir=tmp_path / "halves", **kw, **extra).run(steps // 2, progress=False)
    Trainer.resume(tmp_path / "halves").run(steps, progress=False)
    _assert_identical(_arrays(tmp_path / "straight" / "checkpoint.npz"), _arrays(tmp_path / "halves" / "checkpoint.npz"))
    log_a = [json.loads(x) for x in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "halves" / "log.jsonl").read_text().splitlines()]
    ends = [{k: v for k, v in log[-1].items() if k != "time"} for log in (log_a, log_b)]
    assert ends[0] == ends[1]       # a mixture run with an EMA ends choosing its sampler; others: the last step
    log_a, log_b = ([r for r in log if "loss_d" in r] for log in (log_a, log_b))     # the training records
    assert [r["step"] for r in log_b] == list(range(1, steps + 1))
    for a, b in zip(log_a, log_b, strict=True):
        assert {k: v for k, v in a.items() if k != "time"} == {k: v for k, v in b.items() if k != "time"}


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    runs = [Trainer("ring8", seed=s, steps=5, batch_size=16).run(progress=False) for s in (1, 1, 2)]
    a, b, c = (r.G.state_dict()["0.weight"] for r in runs)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_checkpoint_write_killed_midway_keeps_the_previous_one(tmp_path, monkeypatch):
    t = Trainer("ring8", seed=0, out_dir=tmp_path, steps=4, batch_size=16)
    t.run(2, progress=False)
    before = _arrays(tmp_path / "checkpoint.npz")

    def killed(f, **arrays):
        f.write(b"PK\x03\x04 torn")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        t.run(4, progress=False)
    monkeypatch.undo()
    _assert_identical(before, _arrays(tmp_path / "checkpoint.npz"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")) == []
    resumed = Trainer.resume(tmp_path)
    assert resumed.step == 2
    records = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 2, 2][:len(records)] and len(records) >= 3   # none after step 2
    assert any("sampler" in r for r in records)             # (the run to step 2 ended choosing its sampler)


def test_nan_guard_names_step_and_network_and_keeps_checkpoint(tmp_path, monkeypatch):
    t = Trainer("ring8", seed=0, out_dir=tmp_path, steps=10, batch_size=16, checkpoint_every=2)
    original = t.objective.g_loss

    def poisoned(logit):
        loss, d = original(logit)
        return (loss * np.nan if t.step == 4 else loss), d

    monkeypatch.setattr(t.objective, "g_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 5: non-finite loss in G"):
        t.run(progress=False)
    assert int(checkpoint.load(tmp_path / "checkpoint.npz")["step"]) == 4


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")   # the inf is the point
def test_nan_gradient_is_caught_before_the_update(tmp_path):
    t = Trainer("ring8", seed=0, steps=3, batch_size=16)
    t.D.parameters()["0.weight"][0, 0] = np.inf
    before = t.G.state_dict()
    with pytest.raises(TrainingDiverged, match=r"step 1: non-finite (loss|gradient) in D"):
        t.train_step()
    _assert_identical(before, t.G.state_dict())


def test_log_and_pictures(tmp_path):
    Trainer("ring8", seed=0, out_dir=tmp_path, steps=6, batch_size=16, sample_every=3,
            objective="non_saturating", penalty="none").run(progress=False)  # D(x) is then a probability
    recs = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert set(recs[0]) == {"step", "loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g", "time"}
    assert 0 < recs[0]["d_real"] < 1
    for png in (tmp_path / "samples.png", tmp_path / "samples" / "step_0000003.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_trains_a_step(tmp_path, preset):
    t = Trainer(preset, seed=0, out_dir=tmp_path, steps=1, batch_size=4, data_dir=shared_data("mnist"),
                select_samples=0)       # (the end-of-training choice: its own test)
    t.run(progress=False)
    assert (tmp_path / "samples.png").exists() and t.step == 1
    if t.recipe["conditional"]:
        x = t.sample(3, labels=7)
        assert x.shape == (3, 1, 28, 28)


def test_conditional_generator_gradient_passes_through_the_label_columns():
    t = Trainer("cgan-mnist", seed=0, steps=1, batch_size=4, data_dir=shared_data("mnist"))
    rec = t.train_step()
    assert np.isfinite(rec["grad_norm_g"]) and rec["grad_norm_g"] > 0


def test_resume_rejects_another_preset_and_missing_runs(tmp_path):
    Trainer("ring8", seed=0, out_dir=tmp_path, steps=1, batch_size=8).run(progress=False)
    with pytest.raises(CheckpointError, match="is a 'ring8' run, not 'grid25'"):
        Trainer.resume(tmp_path, preset="grid25")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Trainer.resume(tmp_path / "nothing")
    minigan.save(tmp_path / "other" / "checkpoint.npz", {"w": np.zeros(2)})
    with pytest.raises(CheckpointError, match="not a minigan training checkpoint"):
        Trainer.resume(tmp_path / "other")


def test_unknown_recipe_keys_and_presets():
    with pytest.raises(KeyError, match="unknown preset 'ring9'"):
        Trainer("ring9")
    with pytest.raises(KeyError, match=r"unknown recipe keys \['lr'\]"):
        Trainer("ring8", lr=1e-3)


def test_wasserstein_weight_clipping(tmp_path):
    t = Trainer("ring8", seed=0, steps=3, batch_size=16, objective="wasserstein", weight_clip=0.01, n_critic=5)
    t.run(progress=False)
    assert all(np.abs(p).max() <= 0.01 for p in t.D.parameters().values())
    assert max(float(np.abs(p).max()) for p in t.D.parameters().values()) == pytest.approx(0.01)   # it binds


def test_sampling_net_carries_the_ema_weights_and_is_refilled(tmp_path):
    t = Trainer("ring8", seed=0, steps=3, batch_size=16, ema=0.9, sample_every=0, checkpoint_every=0)
    t.run(progress=False)
    net = t.sampling_net()
    for k, v in net.parameters().items():
        np.testing.assert_array_equal(v, t.ema[k])
    assert not all(np.array_equal(v, t.G.parameters()[k]) for k, v in net.parameters().items())
    t.run(5, progress=False)
    again = t.sampling_net()
    assert again is net
    for k, v in again.parameters().items():
        np.testing.assert_array_equal(v, t.ema[k])
    np.testing.assert_array_equal(t.sample(7, seed=1), t.sample(7, seed=1))


@pytest.mark.parametrize("penalty", ["r1", "r2", "wgan_gp"])
def test_penalty_enters_d_step_lazily_with_its_weight_times_k(penalty, monkeypatch):
    """With penalty_every=2 the penalty runs on D steps 0, 2, 4, ... only, with weight x 2, and its
    gradient is added to D's: D's update differs from the run without it."""
    calls = []
    real_r1, real_gp = trainer_mod.r1_penalty, trainer_mod.wgan_gp_penalty

    def spy(fn):
        def wrapped(D, *args, **kw):
            calls.append(args[-1] if fn is real_r1 else args[2])
            return fn(D, *args, **kw)
        return wrapped
    monkeypatch.setattr(trainer_mod, "r1_penalty", spy(real_r1))
    monkeypatch.setattr(trainer_mod, "wgan_gp_penalty", spy(real_gp))
    kw = dict(steps=3, batch_size=16, n_critic=2, penalty_weight=0.5, penalty_every=2)
    with_p = Trainer("ring8", seed=1, penalty=penalty, **kw)
    recs = [with_p.train_step() for _ in range(3)]
    assert calls == [1.0, 1.0, 1.0]                   # D steps 0, 2, 4 of 6; weight 0.5 x 2
    assert all("penalty" in r and r["penalty"] >= 0 for r in recs)
    without = Trainer("ring8", seed=1, penalty="none", **kw)
    for _ in range(3):
        without.train_step()
    assert any(not np.array_equal(with_p.D.parameters()[k], without.D.parameters()[k]) for k in without.D.parameters())


def test_spectral_norm_recipe_wraps_every_affine_layer_of_d():
    from minigan.gan import build_nets, recipe_for
    for preset in ("ring8", "resnet-mnist"):
        G, D = build_nets(preset, recipe_for(preset, spectral_norm=True), seed=0)
        names = list(D.state_dict())
        assert names and all(not k.endswith(".weight") for k in names if "weight" in k), names
        assert any(k.endswith("weight_u") for k in names) and any(k.endswith("weight_orig") for k in names)
        assert not any("weight_orig" in k for k in G.state_dict())
    with pytest.raises(ValueError, match="unknown penalty"):
        recipe_for("ring8", penalty="r3")


def _own_nets(seed=0):
    import minigan
    G = minigan.Sequential(minigan.Linear(4, 32), minigan.ReLU(), minigan.Linear(32, 2), seed=seed)
    D = minigan.Sequential(minigan.Linear(2, 32), minigan.LeakyReLU(0.2), minigan.Linear(32, 1), seed=seed + 1)
    return G, D


def _two_moons(n, rng):
    t = rng.uniform(0, np.pi, n)
    upper = rng.random(n) < 0.5
    x = np.stack([np.cos(t) + np.where(upper, 0, 1), np.sin(t) * np.where(upper, 1, -1) + np.where(upper, 0, 0.5)], 1)
    return x + 0.05 * rng.standard_normal((n, 2))


@pytest.mark.parametrize("kind", ["array", "callable"])
def test_own_nets_and_data_train_resume_exactly_and_evaluate(tmp_path, kind):
    data = _two_moons(500, np.random.default_rng(0)) if kind == "array" else _two_moons
    kw = dict(z_dim=4, steps=8, batch_size=16, ema=0.9, penalty="r1", penalty_weight=0.1, checkpoint_every=4,
              sample_every=4)
    G, D = _own_nets()
    Trainer(G=G, D=D, data=data, out_dir=tmp_path / "straight", **kw).run(progress=False)
    G, D = _own_nets()
    Trainer(G=G, D=D, data=data, out_dir=tmp_path / "halves", **kw).run(4, progress=False)
    with pytest.raises(trainer_mod.CheckpointError, match="trained your own nets"):
        Trainer.resume(tmp_path / "halves")
    G, D = _own_nets(seed=7)                       # other initial weights: the checkpoint's are loaded
    t = Trainer.resume(tmp_path / "halves", G=G, D=D, data=data)
    t.run(8, progress=False)
    _assert_identical(_arrays(tmp_path / "straight" / "checkpoint.npz"), _arrays(tmp_path / "halves" / "checkpoint.npz"))
    assert (tmp_path / "halves" / "samples.png").read_bytes()[:4] == b"\x89PNG"
    from minigan.metrics import evaluate
    m = evaluate(t, n=200, features=lambda x: x)
    assert m["preset"] == "custom" and m["fid"] >= 0 and m["floor"]["fid"] < m["fid"]
    with pytest.raises(ValueError, match="needs features"):
        evaluate(t)


def test_own_nets_bad_use():
    G, D = _own_nets()
    with pytest.raises(ValueError, match="needs all of G, D and data"):
        Trainer(G=G, D=D, z_dim=4)
    with pytest.raises(ValueError, match="either a preset"):
        Trainer("ring8", G=G, D=D, data=np.zeros((4, 2)), z_dim=4)
    with pytest.raises(ValueError, match="z_dim must be a positive int"):
        Trainer(G=G, D=D, data=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="spectral_norm.*put it in them"):
        Trainer(G=G, D=D, data=np.zeros((4, 2)), z_dim=4, spectral_norm=True)
    with pytest.raises(ValueError, match="must return an array of n samples"):
        Trainer(G=G, D=D, data=lambda n, rng: np.zeros((n - 1, 2)), z_dim=4, batch_size=8).train_step()


@pytest.mark.parametrize("preset", ["mlp-mnist", "dcgan-stacked"])    # G with BatchNorm + EMA; D with BatchNorm
def test_in_training_evaluation_never_changes_the_weights(preset):
    """An evaluation draws from its own noise and leaves the nets' training state alone, so runs apart
    only in models.BOOKKEEPING keys train the same weights (benchmarks/quality.py relies on it)."""
    def run(eval_every):
        t = Trainer(preset, seed=0, steps=3, batch_size=8, eval_every=eval_every, eval_samples=100,
                    select_samples=0, data_dir=shared_data("mnist"))
        return t.run(progress=False)
    a, b = run(1), run(0)
    for name in ("G", "D"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa), name
    assert all(np.array_equal(a.ema[k], b.ema[k]) for k in b.ema)
    assert a.rng.bit_generator.state == b.rng.bit_generator.state


def test_collapse_is_warned_in_the_log_and_on_the_console(tmp_path, capsys, monkeypatch):
    """A sampler whose high-quality fraction falls to 0 at an in-training evaluation is warned about
    (naming it, with its earlier best); an early 0 (nothing learned yet) is not; a run that ends with
    no sample near any mode is."""
    t = Trainer("ring8", seed=0, steps=3, batch_size=16, eval_every=1, eval_samples=200, out_dir=tmp_path,
                ema=0.9, sample_every=0)
    real_step = t.train_step

    def step():                     # G (and its EMA) on a mode after step 2, far from every mode after step 3
        rec = real_step()
        where = t.mixture.centers[0] if t.step == 2 else 50.0
        if t.step >= 2:
            for params in (t.G.parameters(), t.ema):
                _point_at_params(params, where)
        return rec
    monkeypatch.setattr(t, "train_step", step)
    t.run(progress=False)
    records = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    warnings = [r for r in records if "warning" in r]
    evals = [r["eval"] for r in records if "eval" in r]
    assert evals[0]["hq_fraction"] == 0 and evals[0]["raw_g"]["hq_fraction"] == 0     # raw G beside the EMA
    assert evals[1]["hq_fraction"] == 1
    assert [w["step"] for w in warnings] == [3, 3, 3]          # not at step 1: nothing had been near a mode yet
    assert "EMA of G's high-quality fraction fell to 0 (it was 100.0 % at step 2)" in warnings[0]["warning"]
    assert "raw G's" in warnings[1]["warning"] and "end of training" in warnings[2]["warning"]
    err = capsys.readouterr().err
    assert "minigan: warning: step 3: the EMA of G's high-quality fraction fell to 0" in err


def _point_at_params(params, where):
    weight = [k for k in params if k.endswith("weight")][-1]
    params[weight][...] = 0.0
    params[weight.replace("weight", "bias")][...] = where


def _point_at(net, where):
    """Make the last Linear of a net output ``where`` for every input."""
    _point_at_params(net.parameters(), where)


@pytest.mark.parametrize("good", ["raw", "ema"])
def test_the_sampler_is_chosen_by_measurement_and_kept_with_the_checkpoint(tmp_path, good, monkeypatch):
    """A run whose EMA left every mode samples from its raw G after the end-of-run measurement (and
    the other way round); the choice is in the log, the checkpoint, evaluate() and the picture's title."""
    from minigan.metrics import evaluate
    t = Trainer("ring8", seed=0, steps=2, batch_size=16, ema=0.9, out_dir=tmp_path, sample_every=0)
    t.run(1, progress=False)
    assert t.sampler in ("ema", "raw")
    ema_net = t.sampling_net()
    good_net, bad_net = (t.G, ema_net) if good == "raw" else (ema_net, t.G)
    _point_at(good_net, t.mixture.centers[3])                   # every sample on one mode: HQ 100 %, 1/8 modes
    _point_at(bad_net, 50.0)                                    # far from every mode: HQ 0
    t.ema.update({k: v.copy() for k, v in ema_net.parameters().items()})     # (sampling_net refills from t.ema)
    with open(tmp_path / "log.jsonl", "a") as log:
        t.choose_sampler(log=log)
    assert t.sampler == good and t.measured["n"] == MIXTURE_SELECT          # (not the protocol's 2,500)
    assert np.allclose(t.sample(5), t.mixture.centers[3])         # the default sampler is the chosen one
    assert not np.allclose(t.sample(5, ema=good != "ema"), t.mixture.centers[3])
    m = evaluate(t)
    assert m["sampler"] == good and m["hq_fraction"] == 1.0 and m["modes"] == 1
    assert m[f"{good}_g"]["hq_fraction"] == 1.0 and m[("raw" if good == "ema" else "ema") + "_g"]["hq_fraction"] == 0
    last = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert last["sampler"] == good and last["measured"][f"{good}_g"]["modes"] == 1
    t.save()
    assert Trainer.resume(tmp_path).sampler == good
    titles = []
    monkeypatch.setattr(trainer_mod, "samples_figure", lambda path, x, centers, title: titles.append(title))
    t.write_samples(tmp_path / "s.png")
    assert {"raw": "samples of the raw G", "ema": "samples of the EMA of G"}[good] in titles[0]


def test_sampler_score_ranks_coverage_quality_and_balance():
    from minigan.metrics import better_sampler, sampler_score

    def m(modes, hq, kl):
        return {"modes": modes, "hq_fraction": hq, "reverse_kl": kl}
    assert sampler_score(m(8, 0.99, 0.0), 8) == pytest.approx(0.99)
    assert sampler_score(m(8, 0.95, 0.002), 8) > sampler_score(m(8, 0.90, 0.005), 8)
    assert sampler_score(m(7, 0.90, 0.15), 8) > sampler_score(m(8, 0.05, 0.0), 8)   # 8/8 at 5 % is worse
    assert sampler_score(m(0, 0.0, float("inf")), 8) == 0
    result = {"sampler": "ema", "n_modes": 8, "ema_g": m(0, 0.0, float("inf")), "raw_g": m(8, 0.1, 0.5)}
    assert better_sampler(result) == "raw"
    assert better_sampler({**result, "raw_g": m(0, 0.0, float("inf"))}) == "ema"      # a tie keeps the EMA
    assert better_sampler({"sampler": "raw", "modes": 3}) == "raw"                      # one sampler measured


def test_z_dim_reaches_a_preset_like_every_recipe_key():
    t = Trainer("ring8", seed=0, z_dim=4, steps=1, batch_size=8)
    assert t.recipe["z_dim"] == 4 and t.G.parameters()["0.weight"].shape == (128, 4)
    t.train_step()
    assert t.sample(3).shape == (3, 2)


def test_a_checkpoint_from_before_the_sampler_choice_resumes_with_its_ema(tmp_path):
    t = Trainer("ring8", seed=0, steps=2, batch_size=16, out_dir=tmp_path, sample_every=0, eval_every=0)
    t.run(progress=False)
    tree = checkpoint.load(tmp_path / "checkpoint.npz")
    del tree["sampler"]
    checkpoint.save(tmp_path / "checkpoint.npz", tree)
    assert Trainer.resume(tmp_path).sampler == "ema"
    tree["sampler"] = "raw"
    checkpoint.save(tmp_path / "checkpoint.npz", tree)
    assert Trainer.resume(tmp_path).sampler == "raw"
    tree["sampler"] = "best"
    checkpoint.save(tmp_path / "checkpoint.npz", tree)
    with pytest.raises(CheckpointError, match="sampler 'best'"):
        Trainer.resume(tmp_path)


def test_width_sizes_the_mixture_presets_and_nothing_else():
    t = Trainer("grid25", seed=0, width=32, steps=1, batch_size=8)
    assert t.G.parameters()["2.weight"].shape == (32, 32) and t.D.parameters()["0.weight"].shape == (32, 2)
    t.train_step()
    for bad in (0, -1):
        with pytest.raises(ValueError, match="width must be an int >= 1 for preset 'ring8'"):
            Trainer("ring8", width=bad)
    with pytest.raises(ValueError, match="preset 'dcgan-mnist' has a fixed architecture"):
        Trainer("dcgan-mnist", width=64)
    with pytest.raises(ValueError, match="width must be an int >= 1 for preset 'grid25' .*got 'wide'"):
        Trainer("grid25", width="wide")


def test_a_run_saved_before_later_recipe_keys_resumes_with_their_defaults_not_the_presets(tmp_path):
    # ring8 now sets penalty, penalty_every and truncate; a run saved before those keys trained without a
    # penalty and sampled untruncated, and resumes so
    Trainer("ring8", seed=0, steps=1, batch_size=8, out_dir=tmp_path, sample_every=0, eval_every=0,
            penalty="none", penalty_every=1, penalty_weight=10.0, truncate=0.0).run(progress=False)
    for key in ("penalty", "penalty_weight", "penalty_every", "truncate"):
        drop_recipe_key(tmp_path, key)
    back = Trainer.resume(tmp_path)
    assert {k: back.recipe[k] for k in ("penalty", "penalty_weight", "penalty_every", "truncate")} == \
        {"penalty": "none", "penalty_weight": 10.0, "penalty_every": 1, "truncate": 0.0}
    assert PRESETS["ring8"].recipe["penalty"] != "none"          # (so the preset's value would have differed)


def test_a_mixture_run_saved_before_width_was_a_recipe_key_resumes_at_its_old_width(tmp_path):
    # grid25's nets were 256 wide then; a run saved without the key must load into 256 wide nets
    t = Trainer("grid25", seed=0, width=256, steps=1, batch_size=8, out_dir=tmp_path, sample_every=0, eval_every=0)
    t.run(progress=False)
    drop_recipe_key(tmp_path, "width")
    back = Trainer.resume(tmp_path)
    assert back.recipe["width"] == 256
    _assert_identical({k: np.asarray(v) for k, v in back.G.parameters().items()},
                      {k: np.asarray(v) for k, v in t.G.parameters().items()})


def _bn_gan(**recipe):
    G = minigan.Sequential(minigan.nn.Linear(4, 8), minigan.nn.BatchNorm1d(8), minigan.nn.ReLU(),
                           minigan.nn.Linear(8, 8), minigan.nn.BatchNorm1d(8), minigan.nn.ReLU(),
                           minigan.nn.Linear(8, 2), seed=1)
    D = minigan.Sequential(minigan.nn.Linear(2, 8), minigan.nn.LeakyReLU(0.2), minigan.nn.Linear(8, 1), seed=2)
    data = np.random.default_rng(0).normal(size=(256, 2)).astype(np.float32)
    t = Trainer(G=G, D=D, data=data, z_dim=4, steps=5, batch_size=16, ema=0.5, sample_every=0,
                checkpoint_every=0, **recipe)
    t.run(progress=False)
    return t


def test_the_ema_samples_with_batchnorm_statistics_of_its_own_weights():
    """Standing statistics: the EMA net's first BatchNorm holds the average over K batches of fixed noise
    of its input's batch mean and unbiased variance under the EMA weights (by hand here); G's own
    statistics and its layers' momentum are untouched (a custom G shares its layers with the EMA net)."""
    t = _bn_gan(ema_bn_batches=3)
    g_buffers = {k: v.copy() for k, v in t.G.buffers().items()}
    net = t.sampling_net()
    _assert_identical(t.G.buffers(), g_buffers)
    assert [m.momentum for m in t.G.layers if isinstance(m, minigan.nn.BatchNorm1d)] == [0.1, 0.1]
    rng = np.random.default_rng(trainer_mod.STANDING_SEED)
    w, b = t.ema["0.weight"], t.ema["0.bias"]
    h = [rng.standard_normal((16, 4)).astype(np.float32) @ w.T + b for _ in range(3)]
    buffers = net.buffers()
    np.testing.assert_allclose(buffers["1.running_mean"], np.mean([x.mean(0) for x in h], 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(buffers["1.running_var"], np.mean([x.var(0, ddof=1) for x in h], 0), rtol=1e-5)
    assert int(buffers["1.num_batches_tracked"]) == 3
    assert not np.allclose(buffers["4.running_mean"], g_buffers["4.running_mean"])      # (the second one moved too)
    again = t.sampling_net()                                    # the same statistics again: fixed noise
    _assert_identical({k: np.asarray(v) for k, v in again.buffers().items()},
                      {k: np.asarray(v) for k, v in buffers.items()})
    np.testing.assert_array_equal(t.sample(5, seed=1), t.sample(5, seed=1))


def test_ema_bn_batches_0_samples_with_gs_statistics_and_old_runs_resume_so(tmp_path):
    t = _bn_gan(ema_bn_batches=0)
    _assert_identical({k: np.asarray(v) for k, v in t.sampling_net().buffers().items()},
                      {k: np.asarray(v) for k, v in t.G.buffers().items()})
    with pytest.raises(ValueError, match="ema_bn_batches must be an int >= 0"):
        _bn_gan(ema_bn_batches=-1)
    # a run saved before the key sampled with G's statistics, and resumes so (the key's default is 16)
    Trainer("dcgan-mnist", seed=0, steps=1, batch_size=4, data_dir=shared_data("mnist"), out_dir=tmp_path,
            sample_every=0, ema_bn_batches=0, select_samples=0).run(progress=False)
    drop_recipe_key(tmp_path, "ema_bn_batches")
    back = Trainer.resume(tmp_path)
    assert back.recipe["ema_bn_batches"] == 0 and PRESETS["dcgan-mnist"].recipe.get("ema_bn_batches", 16) > 0
    _assert_identical({k: np.asarray(v) for k, v in back.sampling_net().buffers().items()},
                      {k: np.asarray(v) for k, v in back.G.buffers().items()})


def test_g_norm_puts_batchnorm_in_the_mlp_mnist_generators_only():
    from minigan.gan.models import build_nets, recipe_for
    for preset in ("mlp-mnist", "cgan-mnist"):
        G, _ = build_nets(preset, recipe_for(preset, g_norm="batch"))
        kinds = [type(m).__name__ for m in G.layers]
        assert kinds == ["Linear", "BatchNorm1d", "ReLU"] * 3 + ["Linear", "Tanh", "Reshape"]
        assert [m.bias for m in G.layers[:9:3]] == [False] * 3 and G.layers[9].bias
        G, _ = build_nets(preset, recipe_for(preset, g_norm="none"))
        assert not any(type(m).__name__ == "BatchNorm1d" for m in G.layers)
    with pytest.raises(ValueError, match="preset 'dcgan-mnist' has a fixed G"):
        Trainer("dcgan-mnist", g_norm="batch")
    with pytest.raises(ValueError, match="unknown g_norm 'layer'; expected one of none, batch"):
        Trainer("mlp-mnist", g_norm="layer")


def _resumed_dcgan(tmp_path, key, value, legacy):
    """A one-step dcgan-mnist run with recipe ``key=value``, resumed; when ``value`` is what runs saved before the
    key had (``legacy``), the key is first dropped from its files, as those runs have it."""
    run = tmp_path / f"{key}-{value}"
    Trainer("dcgan-mnist", seed=0, steps=1, batch_size=4, data_dir=shared_data("mnist"), out_dir=run,
            sample_every=0, select_samples=0, **{key: value}).run(progress=False)
    if value == legacy:
        drop_recipe_key(run, key)
    return Trainer.resume(run)


def test_d_norm_puts_batchnorm_in_the_dcgan_critics_only(tmp_path):
    from minigan.gan.models import build_nets, recipe_for
    for preset in ("dcgan-mnist", "dcgan-stacked"):
        _, D = build_nets(preset, recipe_for(preset, d_norm="batch"))
        kinds = [type(m).__name__ for m in D.layers]
        assert kinds == ["Conv2d", "LeakyReLU", "Conv2d", "BatchNorm2d", "LeakyReLU", "Flatten", "Linear"]
        assert D.layers[0].bias and not D.layers[2].bias          # (the norm would cancel a bias)
        _, D = build_nets(preset, recipe_for(preset, d_norm="none", d_dropout=0.2))
        kinds = [type(m).__name__ for m in D.layers]
        assert kinds == ["Conv2d", "LeakyReLU", "Dropout", "Conv2d", "LeakyReLU", "Dropout", "Flatten", "Linear"]
        assert D.layers[0].bias and D.layers[3].bias
    with pytest.raises(ValueError, match="preset 'mlp-mnist' has a fixed D"):
        Trainer("mlp-mnist", d_norm="batch")
    with pytest.raises(ValueError, match="unknown d_norm 'layer'; expected one of none, batch"):
        Trainer("dcgan-mnist", d_norm="layer")
    # a DCGAN run saved before the key had BatchNorm in D, and resumes so, whatever the preset's default
    for norm in ("batch", "none"):
        back = _resumed_dcgan(tmp_path, "d_norm", norm, legacy="batch")
        assert back.recipe["d_norm"] == norm and back.step == 1
        assert any(type(m).__name__ == "BatchNorm2d" for m in back.D.layers) == (norm == "batch")


def test_d_channels_sizes_the_dcgan_critics_only_and_old_runs_resume_at_64(tmp_path):
    from minigan.gan.models import build_nets, recipe_for
    for preset in ("dcgan-mnist", "dcgan-stacked"):
        cin = 3 if preset == "dcgan-stacked" else 1
        for c, norm in ((64, "none"), (16, "none"), (24, "batch")):
            _, D = build_nets(preset, recipe_for(preset, d_channels=c, d_norm=norm))
            p = D.parameters()
            assert p["0.weight"].shape == (c, cin, 4, 4) and p["2.weight"].shape == (2 * c, c, 4, 4)
            assert p[f"{len(D.layers) - 1}.weight"].shape == (1, 2 * c * 7 * 7)
            assert (norm == "batch") == (p.get("3.weight", np.zeros(0)).shape == (2 * c,))
    for bad in (0, -1, 2.5, True):           # (-1 too: this preset's bound, not the generic ">= 0")
        with pytest.raises(ValueError, match="d_channels must be an int >= 1 for preset 'dcgan-mnist'"):
            Trainer("dcgan-mnist", d_channels=bad)
    with pytest.raises(ValueError, match="d_channels sets .* preset 'mlp-mnist' has a fixed architecture"):
        Trainer("mlp-mnist", d_channels=64)
    # a run keeps its width on resume; one saved before the key had 64 channels, and resumes so
    for c in (8, 64):
        back = _resumed_dcgan(tmp_path, "d_channels", c, legacy=64)
        assert back.recipe["d_channels"] == c and back.D.parameters()["0.weight"].shape[0] == c


def test_d_depth_deepens_the_dcgan_critics_only_and_old_runs_resume_at_2(tmp_path):
    from minigan.gan.models import build_nets, recipe_for
    for preset in ("dcgan-mnist", "dcgan-stacked"):
        cin = 3 if preset == "dcgan-stacked" else 1
        for depth, norm, side in ((1, "none", 14), (2, "batch", 7), (3, "none", 3), (3, "batch", 3), (4, "none", 1)):
            _, D = build_nets(preset, recipe_for(preset, d_channels=8, d_depth=depth, d_norm=norm))
            p = D.parameters()
            convs = [i for i, m in enumerate(D.layers) if type(m).__name__ == "Conv2d"]
            assert [p[f"{i}.weight"].shape for i in convs] == \
                [(8, cin, 4, 4)] + [(8 << i, 8 << (i - 1), 4, 4) for i in range(1, depth)]
            assert [type(m).__name__ for m in D.layers].count("BatchNorm2d") == (depth - 1 if norm == "batch" else 0)
            assert p[f"{len(D.layers) - 1}.weight"].shape == (1, (8 << (depth - 1)) * side * side)
            assert D.forward(np.zeros((2, cin, 28, 28), D.dtype), train=False)[0].shape == (2, 1)
    with pytest.raises(ValueError, match=r"d_depth 5 halves 28x28 images below 1x1 \(expected d_depth <= 4\)"):
        Trainer("dcgan-mnist", d_depth=5)
    with pytest.raises(ValueError, match="d_depth must be an int >= 1 for preset 'dcgan-mnist'"):
        Trainer("dcgan-mnist", d_depth=0)
    with pytest.raises(ValueError, match="d_depth sets .* preset 'resnet-mnist' has a fixed architecture"):
        Trainer("resnet-mnist", d_depth=3)
    for depth in (3, 2):
        back = _resumed_dcgan(tmp_path, "d_depth", depth, legacy=2)
        assert back.recipe["d_depth"] == depth and len(back.D.parameters()) == 2 * depth + 2


@pytest.mark.parametrize("key, value", [("g_norm", "batch"), ("d_norm", "batch"), ("d_channels", 8), ("width", 8),
                                        ("d_depth", 3)])
def test_a_norm_or_size_key_is_refused_with_your_own_nets(key, value):
    G = minigan.Sequential(minigan.nn.Linear(4, 2), seed=0)
    D = minigan.Sequential(minigan.nn.Linear(2, 1), seed=0)
    with pytest.raises(ValueError, match=f"recipe key '{key}' builds a preset's nets"):
        Trainer(G=G, D=D, data=np.zeros((8, 2), np.float32), z_dim=4, **{key: value})


@pytest.mark.parametrize("key", ["eval_every", "select_samples"])
def test_a_key_that_scores_with_a_presets_metrics_is_refused_with_your_own_nets(key):
    G = minigan.Sequential(minigan.nn.Linear(4, 2), seed=0)
    D = minigan.Sequential(minigan.nn.Linear(2, 1), seed=0)
    with pytest.raises(ValueError, match=f"recipe key '{key}' scores a preset's samples.*features=.*got 10"):
        Trainer(G=G, D=D, data=np.zeros((8, 2), np.float32), z_dim=4, **{key: 10})
    Trainer(G=G, D=D, data=np.zeros((8, 2), np.float32), z_dim=4, **{key: 0})


def test_an_image_run_chooses_its_sampler_at_the_end_on_select_samples_of_fresh_noise(tmp_path):
    """An image preset with an EMA measures both samplers at the end of training on ``select_samples``
    samples of choose_sampler's own noise, and keeps the better; 0: no choice (the EMA samples); the
    presets ship what `minigan eval` scores (5,000; 26,000 for stacked MNIST); a run saved before the
    key did not choose, and resumes so."""
    from minigan.metrics import better_sampler
    assert [recipe_for(p)["select_samples"] for p in ("mlp-mnist", "dcgan-mnist", "dcgan-stacked")] == \
        [5000, 5000, 26000]
    with pytest.raises(ValueError, match="select_samples must be an int >= 0, got -1"):
        recipe_for("dcgan-mnist", select_samples=-1)

    def run(select, out):
        t = Trainer("mlp-mnist", seed=0, steps=2, batch_size=16, select_samples=select, sample_every=0,
                    out_dir=out, data_dir=shared_data("mnist"))
        t.run(progress=False)
        return t, [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    t, records = run(300, tmp_path / "a")
    chosen = [r for r in records if "measured" in r]
    assert len(chosen) == 1 and chosen[0]["step"] == 2 and t.measured["n"] == 300
    assert t.sampler == chosen[0]["sampler"] == better_sampler(t.measured)
    assert Trainer.resume(tmp_path / "a", data_dir=shared_data("mnist")).sampler == t.sampler
    t, records = run(0, tmp_path / "b")
    assert t.sampler == "ema" and t.measured is None and not [r for r in records if "measured" in r]
    drop_recipe_key(tmp_path / "a", "select_samples")
    assert Trainer.resume(tmp_path / "a", data_dir=shared_data("mnist")).recipe["select_samples"] == 0
    Trainer("ring8", seed=0, steps=1, batch_size=8, out_dir=tmp_path / "c", sample_every=0).run(progress=False)
    drop_recipe_key(tmp_path / "c", "select_samples")                 # (a 2-D run always chose: it still does)
    assert Trainer.resume(tmp_path / "c").recipe["select_samples"] == MIXTURE_SELECT


@pytest.mark.parametrize("preset,size", [("dcgan-mnist", "IMAGE_CHUNK"), ("ring8", "SAMPLE_CHUNK")])
def test_sample_runs_g_in_chunks_on_the_same_noise(monkeypatch, preset, size):
    """sample() draws all its noise first and runs G on at most SAMPLE_CHUNK inputs at a time (stacked
    MNIST's 26,000 samples at once exhausted 24 GB; IMAGE_CHUNK for any G but a 2-D mixture's): the
    samples are those of one pass over all of it."""
    t = Trainer(preset, seed=0, steps=1, batch_size=4, dtype="float64", data_dir=shared_data("mnist"))
    whole = t.sample(10, seed=3, ema=False, truncate=0)
    sizes = []
    forward = t.G.forward

    def spy(x, *a, **k):
        sizes.append(len(x))
        return forward(x, *a, **k)
    monkeypatch.setattr(t.G, "forward", spy, raising=False)
    monkeypatch.setattr(trainer_mod, size, 4)
    chunked = t.sample(10, seed=3, ema=False, truncate=0)
    assert sizes == [4, 4, 2]
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12)
