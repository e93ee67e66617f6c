"""The README's runnable snippets run as written."""
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _block_after(marker):
    text = README.read_text()
    assert marker in text, f"README lost the snippet after {marker!r}"
    return text.split(marker, 1)[1].split("```python", 1)[1].split("```", 1)[0]


def test_second_order_r1_step_runs():
    scope = {}
    exec(compile(_block_after("An R1 D step:"), "README.md (R1 step)", "exec"), scope)
    assert float(scope["value"]) > 0 and set(scope["r1"]) == set(scope["D"].parameters())
