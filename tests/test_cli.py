"""`python -m minigan gradcheck`: one row per op, non-zero exit on any failure."""
import io
import subprocess
import sys

import pytest

import minigan
from minigan import cli, nn


def test_gradcheck_command_passes_and_lists_every_op():
    r = subprocess.run([sys.executable, "-m", "minigan", "gradcheck", "--backend", "numpy"],
                       capture_output=True, text=True, timeout=300)
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
    assert cli.run_gradcheck(["numpy"], out=out) == 1
    assert "Tanh" in [line.split()[1] for line in out.getvalue().splitlines() if line.endswith("FAIL")]


@pytest.mark.skipif(minigan.has_cupy(), reason="cupy is usable here")
def test_gradcheck_on_missing_cupy_is_a_one_line_error():
    r = subprocess.run([sys.executable, "-m", "minigan", "gradcheck", "--backend", "cupy"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "cupy" in r.stderr


def test_help():
    r = subprocess.run([sys.executable, "-m", "minigan", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "gradcheck" in r.stdout
