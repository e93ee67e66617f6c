"""Every ```python block of the README runs as written (each in a fresh namespace, in a scratch
directory); the bash commands are covered by the CLI tests."""
import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 6
    assert any("r1_penalty" in b for b in BLOCKS) and any("Trainer(G=G, D=D" in b for b in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope = {"__name__": f"readme_block_{index}"}
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), scope)
    if "projection" in BLOCKS[index].lower():
        hit, y = scope["hit"], scope["y"]
        assert all(hit[y == k].mean() > 0.9 for k in range(3)), "the cGAN did not learn its classes"
    if "Trainer(G=G, D=D" in BLOCKS[index]:
        assert (tmp_path / "runs" / "moons" / "samples.png").exists()
        assert os.path.exists(tmp_path / "runs" / "moons" / "config.json")
