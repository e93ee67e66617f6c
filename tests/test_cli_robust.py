"""The CLI never shows a traceback for user error or damaged run files, and never changes the
files it is given when it refuses them; numbers are validated; --set / --config / presets."""
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigan import checkpoint, cli
from minigan.gan.trainer import Trainer


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A 4-step ring8 run to damage (copied per use)."""
    d = tmp_path_factory.mktemp("runs") / "r"
    assert cli.main(["train", "--steps", "4", "--batch-size", "16", "--out", str(d), "--quiet"]) == 0
    return d


def _digest(folder):
    return {p: hashlib.sha256((folder / p).read_bytes()).hexdigest() for p in sorted(os.listdir(folder))
            if (folder / p).is_file()}


def _main(argv, capsys):
    """cli.main as a user runs it: -> (exit code, stderr); argparse's exits count as codes."""
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


@pytest.mark.parametrize("argv,message", [
    (["train", "--batch-size", "0"], "batch_size must be an int >= 1"),
    (["train", "--batch-size", "-1"], "batch_size must be an int >= 1"),
    (["train", "--seed", "-1"], "--seed must be >= 0"),
    (["train", "--steps", "0"], "--steps must be >= 1"),
    (["train", "--set", "pack=3", "--batch-size", "16"], "pack must be >= 1 and divide batch_size"),
    (["train", "--set", "lr_g=-1"], "lr_g must be a number >= 0"),
    (["train", "--set", "topk=0"], "topk must be a fraction in (0, 1]"),
    (["train", "--set", "topk=1.5"], "topk must be a fraction in (0, 1]"),
    (["train", "--set", "augment=rotation", "--preset", "dcgan-mnist"], "unknown augment 'rotation'"),
    (["train", "--set", "augment=cutout"], "augment transforms images; data 'ring8' are 2-D points"),
    (["train", "--preset", "dcgan-mnist", "--set", "d_depth=5"], "d_depth 5 halves 28x28 images below 1x1"),
    (["train", "--set", "nonsense=1"], "unknown recipe keys ['nonsense']"),
    (["train", "--set", "novalue"], "--set expects KEY=VALUE"),
    (["train", "--config", "missing.json"], "cannot read a JSON recipe"),
    (["eval", "r", "--draws", "0"], "--draws must be >= 1"),
    (["eval", "r", "--seed", "-1"], "--seed must be >= 0"),
])
def test_bad_numbers_are_one_line_usage_errors(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = _main(argv, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def test_out_naming_a_file_is_refused_and_kept(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    code, err = _main(["train", "--out", "notes.txt"], capsys)
    assert code == 2 and "is a file" in err and (tmp_path / "notes.txt").read_text() == "mine"


def test_set_and_config_reach_every_recipe_key_and_presets_lists_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.json").write_text(json.dumps({"objective": "least_squares", "batch_size": 8}))
    assert cli.main(["train", "--config", "r.json", "--set", "objective=hinge", "--set", "ema=0.5",
                     "--steps", "2", "--out", "x", "--quiet"]) == 0
    recipe = json.loads(str(checkpoint.load(tmp_path / "x" / "checkpoint.npz")["config"]))["recipe"]
    assert (recipe["objective"], recipe["batch_size"], recipe["ema"], recipe["steps"]) == ("hinge", 8, 0.5, 2)
    capsys.readouterr()
    assert cli.main(["presets", "--recipes"]) == 0
    out = capsys.readouterr().out
    assert "ring8:" in out and "dcgan-stacked:" in out and '"objective": "hinge"' in out


def test_resume_without_steps_goes_to_the_runs_own_target(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--steps", "6", "--batch-size", "16", "--out", "r", "--quiet"]) == 0
    t = Trainer.resume("r")
    assert t.recipe["steps"] == 6 and t.step == 6
    code, err = _main(["train", "--resume", "r", "--quiet"], capsys)
    assert code == 0 and "complete: 6 of 6 steps" in err
    assert cli.main(["train", "--resume", "r", "--steps", "8", "--quiet"]) == 0
    assert Trainer.resume("r").step == 8


def _damage(path, how, data):
    raw = bytearray(path.read_bytes())
    if how == "truncate":
        raw = raw[:data.draw(st.integers(0, max(0, len(raw) - 1)))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "empty":
        raw = bytearray()
    path.write_bytes(bytes(raw))


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(data=st.data(), target=st.sampled_from(["checkpoint.npz", "log.jsonl"]),
       how=st.sampled_from(["truncate", "flip", "empty"]),
       command=st.sampled_from(["sample", "eval", "resume"]))
def test_damaged_run_files_never_give_a_traceback(small_run, tmp_path, data, target, how, command, capsys):
    import tempfile
    run = Path(tempfile.mkdtemp(dir=tmp_path)) / "run"
    shutil.copytree(small_run, run)
    _damage(run / target, how, data)
    before = _digest(run)
    argv = {"sample": ["sample", str(run), "--n", "16", "--out", str(tmp_path / "s.png")],
            "eval": ["eval", str(run), "--n", "64"],
            "resume": ["train", "--resume", str(run), "--steps", "5", "--quiet"]}[command]
    code, err = _main(argv, capsys)
    if target == "checkpoint.npz":
        damaged = True
        try:
            checkpoint.load(run / target)
        except checkpoint.CheckpointFileError:
            pass
        else:
            damaged = False          # a flip that zip's CRC does not see (in the directory padding, say)
        if damaged:
            assert code == 1 and len(err.strip().splitlines()) == 1, err
            assert _digest(run) == before                      # refused files are left as they were
    if command in ("sample", "eval"):
        assert _digest(run) == {**before, **{k: v for k, v in _digest(run).items() if k not in before}}


def test_a_pickled_checkpoint_is_refused_without_running_it(small_run, tmp_path, capsys):
    run = tmp_path / "p"
    shutil.copytree(small_run, run)
    tree = checkpoint.load(run / "checkpoint.npz")
    flat = {}
    with np.load(run / "checkpoint.npz") as f:
        flat = {k: f[k] for k in f.files}
    flat["evil"] = np.array([object()], dtype=object)
    np.savez(run / "checkpoint.npz", **flat)
    code, err = _main(["sample", str(run)], capsys)
    assert code == 1 and "pickled" in err and "allow_pickle" not in err
    assert tree["format"] == "minigan-run-1"


def test_a_torn_last_log_line_is_repaired_on_resume_not_refused(small_run, tmp_path, capsys):
    run = tmp_path / "t"
    shutil.copytree(small_run, run)
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 5, "loss_d": 0.')
    assert cli.main(["train", "--resume", str(run), "--steps", "5", "--quiet"]) == 0
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss_d" in r] == [1, 2, 3, 4, 5]    # (and each run's sampler choice)


def test_corrupt_zip_message_names_the_file(small_run, tmp_path):
    bad = tmp_path / "c.npz"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("x.npy", b"not an array")
    with pytest.raises(checkpoint.CheckpointFileError, match="truncated or corrupt"):
        checkpoint.load(bad)
