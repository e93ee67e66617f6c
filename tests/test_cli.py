"""`python -m minigan gradcheck`: one row per op, non-zero exit on any failure."""
import io
import json
import os
import re

import pytest

import minigan
from minigan import cli, nn

from conftest import run_minigan


def test_gradcheck_command_passes_and_lists_every_op():
    r = run_minigan("gradcheck", "--backend", "numpy", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line.split()[1] for line in r.stdout.splitlines()[1:-1]]
    for op in ["Linear", "Conv2d", "ConvTranspose2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "Dropout", "ReLU",
               "LeakyReLU", "Tanh", "Sigmoid", "Flatten", "Reshape", "Upsample", "AvgPool2d", "Residual",
               "bce_with_logits", *minigan.OBJECTIVES]:
        assert op in rows, op
    assert "all passed" in r.stdout.splitlines()[-1]


def test_gradcheck_fails_on_a_broken_backward(monkeypatch):
    monkeypatch.setattr(nn.Tanh, "_bwd", lambda dy, y: dy * (1 - y))     # the wrong derivative
    out = io.StringIO()
    assert cli.run_gradcheck(["numpy"], out=out) == 2       # the backward's row and its tangent's
    failed = [line.split()[1] for line in out.getvalue().splitlines() if line.endswith("FAIL")]
    assert failed == ["Tanh", "Tanh"], failed


def test_gradcheck_second_order_row_fails_on_a_broken_tangent(monkeypatch):
    monkeypatch.setattr(nn.Sigmoid, "_bjvp", lambda dy, dy_dot, y, y_dot: dy_dot * y * (1 - y))   # curvature dropped
    out = io.StringIO()
    assert cli.run_gradcheck(["numpy"], out=out) == 1
    assert [line.split()[:3] for line in out.getvalue().splitlines() if line.endswith("FAIL")] == \
        [["numpy", "Sigmoid", "(2nd)"]]


@pytest.mark.skipif(minigan.has_cupy(), reason="cupy is usable here")
def test_gradcheck_on_missing_cupy_is_a_one_line_error():
    r = run_minigan("gradcheck", "--backend", "cupy", timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "pip install" in r.stderr and not r.stdout


def test_help():
    r = run_minigan("--help", timeout=60)
    assert r.returncode == 0 and "gradcheck" in r.stdout


def test_train_with_no_arguments_trains_ring8(tmp_path, monkeypatch, capsys):
    """`minigan train` alone asks for the ring8 preset's own steps in runs/ring8; the run itself is
    cut to 40 steps here (the whole job runs in test_quality_smoke.py)."""
    from minigan.gan.models import PRESETS
    from minigan.gan.trainer import Trainer
    asked, run = [], Trainer.run

    def short_run(self, steps=None, progress=True):
        asked.append((self.preset, steps, progress))
        self.recipe["sample_every"] = self.recipe["checkpoint_every"] = 20
        return run(self, 40, progress)
    monkeypatch.setattr(Trainer, "run", short_run)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train"]) == 0
    assert asked == [("ring8", PRESETS["ring8"].recipe["steps"], True)]
    out = tmp_path / "runs" / "ring8"
    for name in ("checkpoint.npz", "log.jsonl", "samples.png"):
        assert (out / name).exists(), name
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss_d" in r] == list(range(1, 41))
    chosen = [r for r in records if "measured" in r]
    assert len(chosen) == 1 and chosen[0]["sampler"] in ("ema", "raw") and set(chosen[0]["measured"]) == {"ema_g", "raw_g"}
    err = capsys.readouterr().err
    assert "steps/s" in err and re.search(r"ring8, step 40: \d/8 modes, [\d.]+ % high quality", err)


def test_train_resume_sample_and_errors(tmp_path):
    from conftest import shared_data

    mnist = str(shared_data("mnist"))
    r = run_minigan("train", "--preset", "cgan-mnist", "--steps", "2", "--batch-size", "8", "--seed", "1",
                 "--out", "c", "--data-dir", mnist, "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_minigan("train", "--resume", "c", "--steps", "3", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "c" / "log.jsonl").read_text().splitlines()) == 3
    r = run_minigan("sample", "c", "--n", "16", "--label", "4", "--out", "four.png", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "four.png").read_bytes()[:4] == b"\x89PNG"
    errors = [
        (("train", "--preset", "ring9"), "unknown preset 'ring9'"),
        (("train", "--preset", "dcgan-mnist", "--data-dir", "missing"), "data directory missing does not exist"),
        (("train", "--out", "c", "--preset", "cgan-mnist", "--data-dir", mnist), "already holds a run"),
        (("train", "--resume", "c", "--preset", "mlp-mnist"), "is a 'cgan-mnist' run, not 'mlp-mnist'"),
        (("train", "--resume", "nowhere"), "no checkpoint in nowhere"),
        (("sample", "c", "--label", "12"), "--label must be a digit"),
    ]
    for args, message in errors:
        r = run_minigan(*args, cwd=tmp_path)
        assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run_minigan("train", "--preset", "ring8", "--steps", "2", "--out", "r", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_minigan("sample", "r", "--label", "3", cwd=tmp_path)
    assert r.returncode == 2 and "needs a conditional preset" in r.stderr


def test_train_without_mnist_says_where_to_get_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MINIGAN_DATA"}
    env["MINIGAN_CACHE"] = str(tmp_path / "empty-cache")
    r = run_minigan("train", "--preset", "mlp-mnist", cwd=tmp_path, timeout=120, env=env)
    assert r.returncode == 1 and "--download" in r.stderr and "Traceback" not in r.stderr


def test_the_end_of_training_line_says_each_kind_of_run_in_its_own_metrics():
    stacked = {"step": 5000, "sampler": "raw", "modes": 1000, "kl": 0.0871,
               "ema_g": {"modes": 999, "kl": 0.0942}, "raw_g": {"modes": 1000, "kl": 0.0871}}
    assert cli._measured_line("dcgan-stacked", stacked) == (
        "dcgan-stacked, step 5000: 1000/1000 modes, KL 0.087 (raw G, chosen by measurement over the EMA of G: "
        "999/1000 modes, KL 0.094)")
    mnist = {"step": 7, "sampler": "ema", "fid": 27.6, "digit_kl": 0.0173, "truncate": 0.1,
             "untruncated": {"fid": 30.5, "digit_kl": 0.02}}
    assert cli._measured_line("dcgan-mnist", mnist) == ("dcgan-mnist, step 7: FID 27.60, digit KL 0.0173 (Jacobian "
                                                        "truncation 0.1, without it FID 30.50, digit KL 0.0200)")
