"""tools/mutants.py's own outcomes: a mutant is *killed* only when its tests ran and failed; passing
tests are a survivor, tests that never ran (a collection error) and tests still running at the timeout
are outcomes of their own, and the mutated copy is restored whatever happened."""
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
try:
    import mutants
finally:
    sys.path.pop(0)

MODULE = "X = 1\n"
TESTS = {
    "test_value.py": "import mod\n\ndef test_value():\n    assert mod.X == 1\n",
    "test_slow.py": "import time\nimport mod\n\ndef test_slow():\n    time.sleep(60 * mod.X)\n",
    "test_broken.py": "import mod\nimport a_module_that_does_not_exist\n\ndef test_never():\n    pass\n",
}


@pytest.fixture
def copy(tmp_path):
    (tmp_path / "mod.py").write_text(MODULE)
    for name, text in TESTS.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def run(copy, new, test, timeout=120):
    return mutants.run_mutant(str(copy), "m", "mod.py", "X = 1\n", new, [test], copy, timeout=timeout)


@pytest.mark.parametrize("new, test, want", [
    ("X = 2\n", "test_value.py", "killed"),
    ("X = 1  # the same value\n", "test_value.py", "SURVIVED"),
    ("X = 2\n", "test_broken.py", "ERROR 2"),                      # collection error: pytest exits 2
])
def test_outcomes(copy, new, test, want):
    outcome, secs, tail = run(copy, new, test)
    assert outcome == want, tail
    assert (copy / "mod.py").read_text() == MODULE                # the copy restored


def test_a_stalled_mutant_times_out_and_its_process_is_gone(copy):
    t0 = time.perf_counter()
    outcome, secs, tail = run(copy, "X = 1\n", "test_slow.py", timeout=3)
    assert outcome == "TIMED OUT"
    assert time.perf_counter() - t0 < 30                          # not the test's 60 s
    assert (copy / "mod.py").read_text() == MODULE


def test_a_mutant_whose_source_moved_is_an_error(copy):
    with pytest.raises(SystemExit, match="occurs 0 times"):
        mutants.run_mutant(str(copy), "m", "mod.py", "Y = 1\n", "Y = 2\n", ["test_value.py"], copy)


def test_every_listed_mutant_still_finds_its_source_once():
    """The curated list stays in step with the code (mutants.py refuses a mutant whose source moved;
    this says so in the suite, before CI's mutation run)."""
    for name, rel, old, _new, _tests in mutants.MUTANTS:
        assert (mutants.ROOT / rel).read_text().count(old) == 1, name
