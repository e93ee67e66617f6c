"""The default job, end to end: `minigan train`'s ring8 recipe on one seed, as a user runs it (the
whole recipe, not a shortened one), then `minigan eval`.  The recipe's 10-seed table is in
benchmarks/quality.md (seed 5 is one of them); this is the one seed CI can afford (~1-2 min on 2
cores)."""
import json

from minigan import cli


def test_default_ring8_job_covers_every_mode_tightly(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--seed", "5", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "ring8, step" in err and "chosen by measurement" in err and "Jacobian truncation 0.1" in err
    assert cli.main(["eval", "runs/ring8", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    # the bar is 8/8, HQ >= 98 %, KL <= 0.05; before this recipe one seed in three ended 0/8.
    # The sampler redraws the steepest 10 % of the noise (Jacobian truncation; 5 % until session 28). At 5 %, 22
    # runs of the 16k-20k step recipes, 6 x 2,500 samples each, scored 99.98 % on average truncated (the worst
    # evaluation 99.76 %) and 98.0 % untruncated (the worst 96.9 %); the 12k recipe of session 24: 10 seeds at
    # 100.0 +- 0.0 % truncated (worst 99.9), 97.3 +- 0.4 % untruncated (worst 96.6); the 10k recipe since session
    # 27: 10 seeds at 100.0 +- 0.0 % truncated (worst 99.9), 97.1 +- 0.5 % untruncated (worst 96.2; seed 5: 96.8);
    # its 30 runs (seeds 0-9, 2000-2009, 3000-3009) at 10 % redrawn: the worst 99.96 % (at 5 %: 98.99, a slow
    # seed's bridges)
    assert m["modes"] == 8 and m["untruncated"]["modes"] == 8, m
    assert m["hq_fraction"] >= 0.98, m
    assert m["untruncated"]["hq_fraction"] >= 0.93, m
    assert m["reverse_kl"] <= 0.05 and m["untruncated"]["reverse_kl"] <= 0.05, m
