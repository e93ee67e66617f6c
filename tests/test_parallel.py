"""Data-parallel training: `mpiexec -n 2` lands where one process lands (float64, 1e-8), resumes
across rank counts, refuses a batch that does not split, and stops every rank when one fails."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from minigan import checkpoint

from conftest import shared_data

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found (pip install mpi4py mpich)")
TOL = 1e-8


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "MPI_", "HYDRA"))}
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"      # two ranks on two cores
    return env


def _minigan(args, cwd, ranks=1, timeout=600):
    cmd = ([MPIEXEC, "-n", str(ranks)] if ranks > 1 else []) + [sys.executable, "-m", "minigan", *args]
    r = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r


def _state(run):
    tree = checkpoint.load(run / "checkpoint.npz")
    out = {f"{net}.{k}": v for net in ("G", "D") for k, v in tree[net].items()}
    out.update({f"ema.{k}": v for k, v in tree.get("ema", {}).items()})
    for opt in ("opt_g", "opt_d"):
        for name, st in tree[opt].get("state", {}).items():
            out.update({f"{opt}.{name}.{k}": v for k, v in st.items()})
    return out


def _assert_same_run(a, b):
    sa, sb = _state(a), _state(b)
    assert sorted(sa) == sorted(sb)
    for k in sa:
        x, y = np.asarray(sa[k], dtype=np.float64), np.asarray(sb[k], dtype=np.float64)
        scale = max(float(np.abs(x).max(initial=0)), float(np.abs(y).max(initial=0)), 1e-300)
        assert float(np.abs(x - y).max(initial=0)) <= TOL * scale, f"{k}: differs by {np.abs(x - y).max():.3e}"
    la, lb = ([json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()] for run in (a, b))
    if "sampler" in la[-1]:             # an EMA mixture run ends choosing its sampler: both runs choose alike
        assert la[-1]["sampler"] == lb[-1]["sampler"]
    la, lb = ([r for r in log if "loss_d" in r] for log in (la, lb))
    assert [r["step"] for r in la] == [r["step"] for r in lb] == list(range(1, len(la) + 1))   # one line per step
    for ra, rb in zip(la, lb):
        for key in ("loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g"):
            assert abs(ra[key] - rb[key]) <= 1e-7 * max(1.0, abs(ra[key])), (ra["step"], key)


@pytest.mark.parametrize("preset,extra", [
    ("ring8", ["--steps", "40", "--set", "d_dropout=0.2", "--set", "ema=0.9"]),      # (the preset's WGAN-GP too)
    ("ring8", ["--steps", "20", "--penalty", "r2", "--set", "d_dropout=0.2"]),       # the penalty's own dropout masks
    ("ring8", ["--steps", "20", "--set", "topk=0.3"]),                               # top-k over the global batch
    ("ring8", ["--steps", "10", "--set", "topk=0.004"]),             # k = 1 of 256: a rank holding none of the top k
    ("ring8", ["--steps", "20", "--penalty", "wgan_gp", "--set", "n_critic=2", "--set", "pack=2"]),
    ("grid25", ["--steps", "20", "--penalty", "r1", "--penalty-every", "2", "--spectral-norm"]),
    ("dcgan-mnist", ["--steps", "12", "--batch-size", "32", "--set", "checkpoint_every=6", "--set", "d_norm=batch",
                     "--penalty", "none"]),                                     # BatchNorm in G and D
    ("dcgan-mnist", ["--steps", "8", "--batch-size", "16"]),                    # the preset's lazy R1 on convs
    ("dcgan-mnist", ["--steps", "4", "--batch-size", "16", "--set", "augment=translation,cutout"]),  # global draws
])
def test_two_ranks_land_where_one_process_lands(tmp_path, preset, extra):
    # (an image run's end-of-training choice between its EMA and raw G is rank 0's alone, and costs 5,000 samples)
    data = ["--data-dir", str(shared_data("mnist")), "--set", "select_samples=0"] if "mnist" in preset else []
    common = ["train", "--preset", preset, "--seed", "3", "--set", "dtype=float64", "--quiet", *data, *extra]
    _minigan(common + ["--out", "one"], tmp_path)
    r = _minigan(common + ["--out", "two"], tmp_path, ranks=2)
    assert r.stdout.count("checkpoint.npz") == 1                       # rank 0 alone writes and prints
    _assert_same_run(tmp_path / "one", tmp_path / "two")


def test_a_run_resumes_with_another_rank_count(tmp_path):
    common = ["--preset", "ring8", "--seed", "1", "--set", "dtype=float64", "--batch-size", "64", "--quiet"]
    _minigan(["train", *common, "--steps", "20", "--out", "straight"], tmp_path)
    _minigan(["train", *common, "--steps", "10", "--out", "mixed"], tmp_path, ranks=2)      # 2 ranks ...
    _minigan(["train", "--resume", "mixed", "--steps", "20", "--quiet"], tmp_path)           # ... then 1
    _assert_same_run(tmp_path / "straight", tmp_path / "mixed")


def test_a_batch_that_does_not_split_is_refused_before_any_work(tmp_path):
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "minigan", "train", "--batch-size", "33", "--steps", "2",
           "--out", "x", "--quiet"]
    r = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "must split into 2 equal per-rank batches" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x" / "log.jsonl").exists()
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "minigan", "train", "--preset", "dcgan-mnist", "--data-dir",
           str(shared_data("mnist")), "--set", "d_norm=batch", "--penalty", "r1", "--batch-size", "8", "--steps", "1",
           "--out", "y", "--quiet"]
    r = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "through a BatchNorm critic is not data-parallel" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_failure_on_one_rank_stops_every_rank(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(textwrap.dedent("""
        from mpi4py import MPI
        from minigan.gan import Trainer
        t = Trainer("ring8", seed=0, steps=50, batch_size=16)
        real_step = t.train_step
        def step():
            if MPI.COMM_WORLD.Get_rank() == 1 and t.step == 3:
                raise RuntimeError("injected failure")
            return real_step()
        t.train_step = step
        t.run(progress=False)
    """))
    r = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(script)], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "rank 1 of 2 failed: RuntimeError: injected failure" in r.stderr


def test_a_single_process_never_imports_mpi4py():
    r = subprocess.run([sys.executable, "-c", "import sys, minigan; from minigan.gan import Trainer; "
                        "Trainer('ring8', steps=1, batch_size=8).run(progress=False); print('mpi4py' in sys.modules)"],
                       env=_env(), capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr


@pytest.mark.skipif(not __import__("minigan").has_cupy(), reason="needs cupy and a CUDA GPU")
def test_two_ranks_on_cupy_land_where_one_process_lands(tmp_path):
    """cupy backend: host-staged by default; with MINIGAN_NCCL=1 and a GPU per rank, NCCL (owed a device run)."""
    common = ["train", "--preset", "ring8", "--seed", "3", "--set", "dtype=float64", "--steps", "20", "--quiet",
              "--backend", "cupy"]
    _minigan(common + ["--out", "one"], tmp_path)
    r = _minigan(common + ["--out", "two"], tmp_path, ranks=2)
    assert "through host memory" in r.stderr or os.environ.get("MINIGAN_NCCL") == "1"
    _assert_same_run(tmp_path / "one", tmp_path / "two")
