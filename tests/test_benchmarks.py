"""The benchmark scripts' own accounting (their timings are not tested: machines are noisy)."""
import os
import sys

import numpy as np
import pytest

import minigan

from conftest import kernels_enabled, shared_data

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
import gan_step  # noqa: E402
import gemm_rate  # noqa: E402


def test_gemm_recorder_counts_every_conv_gemm_of_the_dcgan32_step():
    """2*M*N*K summed over the recorded GEMMs equals the step's convolution FLOPs counted by hand:
    per layer MACs x passes (forward, backward-data, backward-filter).  D: 3 forwards (real, fake,
    fake again), 2 backward-filter, backward-data 3x except the first layer (only in G's step:
    input_grad=False skips it for the images); G: 1 forward, 1 backward-filter, backward-data for
    all but the first layer (none for z)."""
    batch = 2
    G, D, z, real, _ = gan_step.build("dcgan32", "numpy", batch)
    step = gan_step.minigan_step_fn(G, D, z, real)
    with gemm_rate.GemmRecorder(np, "numpy") as rec:
        step()
    assert np.matmul is rec.real                                   # unwrapped again
    d_macs = [16 * 16 * 64 * 1 * 16, 8 * 8 * 128 * 64 * 16, 4 * 4 * 256 * 128 * 16, 1 * 1 * 1 * 256 * 16]
    d_passes = [3 + 2 + 1, 3 + 2 + 3, 3 + 2 + 3, 3 + 2 + 3]
    g_macs = [1 * 1 * 100 * 256 * 16, 4 * 4 * 256 * 128 * 16, 8 * 8 * 128 * 64 * 16, 16 * 16 * 64 * 1 * 16]
    g_passes = [1 + 1 + 0, 1 + 1 + 1, 1 + 1 + 1, 1 + 1 + 1]
    expected = 2 * batch * (sum(m * p for m, p in zip(d_macs, d_passes)) + sum(m * p for m, p in zip(g_macs, g_passes)))
    assert sum(2 * m * n * k for m, n, k, _ in rec.calls) == expected
    assert len(rec.seconds()) == len(rec.calls) == sum(d_passes) + sum(g_passes)


@pytest.mark.parametrize("fused", [True, False])
def test_fused_pairs_cut_the_resnet_blocks_gemm_work_to_what_the_formulas_say(fused):
    """The GEMM work of resnet-mnist's blocks (forward, counted at xp.matmul), per sample, in units of
    c^2 H W for c channels at H x W: the up block (to 2H x 2W) 76 plain (two 3x3 convs and a 1x1 at the
    large size) and 53 fused (the 4-tap transposed conv 16, the second 3x3 conv 36, the 1x1 before
    upsampling 1); the down block 19 plain (3x3 convs 9 + 9, 1x1 1) and 13.25 fused (9, the 4-tap
    conv at a quarter of the pixels 4, the 1x1 after pooling 0.25)."""
    from minigan.gan.models import _res_down, _res_up
    from minigan.nn.fuse import fusion
    n, c, h, w = 2, 4, 6, 6
    x = np.random.default_rng(0).standard_normal((n, c, h, w)).astype(np.float32)
    for block, plain, fast in ((_res_up(c, c), 76, 53), (_res_down(c, c), 19, 13.25)):
        net = minigan.Sequential(block, seed=0)
        with fusion(numpy=fused), gemm_rate.GemmRecorder(np, "numpy") as rec:
            net.forward(x)
        assert sum(m * nn * k for m, nn, k, _ in rec.calls) == (fast if fused else plain) * n * c * c * h * w


def test_mixture_workload_is_ring8s_and_grid25s_nets():
    """gan_step's ``mixture`` (grid25's preset builds it) times the nets and batch ring8 trains too (should
    the two presets' nets part, this fails), and its step runs."""
    from minigan.gan.trainer import Trainer
    G, D, z, real, batch = gan_step.build("mixture", "numpy", None)
    for preset in ("ring8", "grid25"):
        t = Trainer(preset, seed=0, out_dir=None)
        assert repr(G) == repr(t.G) and repr(D) == repr(t.D), preset        # layers, sizes, slopes
        assert batch == t.recipe["batch_size"] and z.shape[1] == t.recipe["z_dim"], preset
    before = {k: v.copy() for k, v in G.parameters().items()}
    gan_step.minigan_step_fn(G, D, z, real)()
    assert any(not np.array_equal(before[k], v) for k, v in G.parameters().items())


@pytest.mark.parametrize("preset, channels", [("dcgan-mnist", 1), ("dcgan-stacked", 3), ("resnet-mnist", 1)])
def test_mnist_workloads_are_the_presets_nets(preset, channels):
    """gan_step's ``dcgan-mnist`` / ``dcgan-stacked`` / ``resnet-mnist`` time the nets, batch and image shape
    the preset trains."""
    from minigan.gan.trainer import Trainer
    G, D, z, real, batch = gan_step.build(preset, "numpy", None)
    t = Trainer(preset, seed=0, out_dir=None, data_dir=shared_data("mnist"))
    assert repr(G) == repr(t.G) and repr(D) == repr(t.D)
    assert batch == t.recipe["batch_size"] and z.shape[1] == t.recipe["z_dim"] and real.shape[1:] == (channels, 28, 28)


def _quality():
    import quality
    return quality


def test_quality_write_block_replaces_one_preset_and_adds_new_ones_after_the_last(tmp_path):
    q = _quality()
    out = tmp_path / "quality.md"
    out.write_text("intro\n\n" + "\n".join([q.markers("ring8")[0], "old ring8", q.markers("ring8")[1]]) + "\n\nhand text\n")
    out.write_text(q.write_block(out, "grid25", ["grid table"]))
    out.write_text(q.write_block(out, "ring8", ["new ring8"]))
    text = out.read_text()
    assert "old ring8" not in text and "new ring8" in text and text.startswith("intro\n") and text.endswith("hand text\n")
    assert text.index("new ring8") < text.index("grid table") < text.index("hand text")     # added after the last block
    assert text.count("quality.py: grid25 begin") == 1


def test_quality_image_table_counts_the_goal_on_the_ratio_to_the_floor_and_step_seconds_skips_torn_lines(tmp_path):
    q = _quality()
    rows = [dict(seed=s, fid=f, floor={"fid": 4.0}, digit_kl=k, inception_score=9.0, precision=0.9, recall=0.9,
                 sampler="ema", step_s=0.1, wall=10.0, recipe={"steps": 5})
            for s, f, k in [(0, 7.9, 0.005), (1, 8.1, 0.005), (2, 4.0, 0.02)]]
    text = "\n".join(q.table("dcgan-mnist", rows))
    assert "**1/3**" in text and "Worst seed: 1 (2.0x)" in text and "| 0 | 7.90 | 4.00 | 2.0 |" in text
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "loss_d": 1, "time": 0.5}\n{"step": 2, "warning": "x"}\n'
                   '{"step": 2, "loss_d": 1, "time": 1.5}\n{"step": 3, "loss_d": 1, "ti')
    assert q.step_seconds(tmp_path) == 1.0


def test_quality_image_table_gives_the_goal_on_the_draws_means_when_scored_on_several():
    q = _quality()

    def row(seed, fid, floor, draws_fid, draws_floor, draws_kl):
        return dict(seed=seed, fid=fid, floor={"fid": floor}, digit_kl=0.005, inception_score=9.0, precision=0.9,
                    recall=0.9, sampler="ema", step_s=0.1, wall=10.0, recipe={"steps": 5},
                    draws={"seeds": [0, 1, 2], "mean": {"fid": draws_fid, "floor": {"fid": draws_floor},
                                                        "digit_kl": draws_kl},
                           "std": {"fid": 1.0, "floor": {"fid": 0.5}, "digit_kl": 0.001}})
    rows = [row(0, 7.9, 4.0, 9.0, 3.0, 0.005),      # met on eval seed 0 alone, 3.0x over the draws
            row(1, 7.0, 4.0, 6.0, 3.5, 0.005),      # met both ways
            row(2, 7.0, 4.0, 6.0, 3.5, 0.02)]       # the draws' digit KL misses
    text = "\n".join(q.table("resnet-mnist", rows))
    assert "**3/3**" in text and "on the draws' means: **1/3**" in text and "eval seeds 0 / 1 / 2" in text
    assert "| 0 | 7.90 | 4.00 | 2.0 | 9.00 +- 1.00 | 3.0 | 0.0050 |" in text
    one_draw = [{k: v for k, v in r.items() if k != "draws"} for r in rows]
    assert "over the draws" not in "\n".join(q.table("resnet-mnist", one_draw))


def test_quality_recipe_line_names_the_keys_the_runs_differ_in_and_tells_bookkeeping_apart():
    q = _quality()
    base = {"lr_d": 4e-4, "steps": 5000, "eval_every": 0, "eval_samples": 1000, "sample_every": 500}
    rows = [{"recipe": dict(base)}, {"recipe": {**base, "eval_every": 1000, "sample_every": 100}}]
    assert "the runs differ only in eval_every, sample_every, which never change the weights" in q.recipe_line(rows)
    assert "DIFFER" not in q.recipe_line(rows) and "differ" not in q.recipe_line(rows[:1])
    rows.append({"recipe": {**base, "lr_d": 2e-4, "steps": 6000}})
    line = q.recipe_line(rows)
    assert "THE RUNS DIFFER in lr_d, steps: the first run's shown; also in eval_every, sample_every," in line
    assert '"lr_d": 0.0004' in line and "sample_every" not in line.split("`")[1]
    rows.append({"recipe": {k: v for k, v in base.items() if k != "lr_d"}})      # (a key one run lacks)
    assert "THE RUNS DIFFER in lr_d, steps:" in q.recipe_line(rows)


def test_quality_tables_of_one_seed_say_so_instead_of_a_nan_spread():
    q = _quality()
    ring = [dict(seed=3, modes=8, hq_fraction=0.975, reverse_kl=0.002, sampler="ema", step_s=0.005, wall=90.0,
                 recipe={"steps": 5})]
    image = [dict(seed=0, fid=64.7, floor={"fid": 4.72}, digit_kl=0.021, inception_score=9.0, precision=0.5,
                  recall=0.9, sampler="ema", step_s=0.9, wall=5548.0, recipe={"steps": 5})]
    for text in ("\n".join(q.table("ring8", ring)), "\n".join(q.table("dcgan-mnist", image))):
        assert "nan" not in text and "1 seed" in text
    assert "| minigan `ring8` (1 seed) | 8.00 | 97.5 | 0.002 |" in "\n".join(q.table("ring8", ring))
    assert "1 seed: FID 64.70, **13.7 x the real-vs-real floor**, digit KL 0.0210;" in "\n".join(q.table("dcgan-mnist", image))
    two = ring + [dict(ring[0], seed=4, hq_fraction=0.965)]
    assert "(2 seeds, mean +- std) | 8.00 +- 0.00 | 97.0 +- 0.7 |" in "\n".join(q.table("ring8", two))


def test_quality_tables_name_the_runs_scored_before_their_last_step():
    """A run cut off (a device call's limit) is scored at its last checkpoint, and the table says so."""
    q = _quality()
    rows = [dict(seed=s, fid=20.0, floor={"fid": 4.0}, digit_kl=0.005, inception_score=9.0, precision=0.9,
                 recall=0.9, sampler="ema", step_s=0.03, wall=float("nan"), recipe={"steps": 16000}, step=step)
            for s, step in [(1, 13000), (2, 16000), (3, 12500)]]
    text = "\n".join(q.table("dcgan-mnist", rows))
    assert "**Unfinished runs**, scored at their last checkpoint: seed 1 at step 13,000 of 16,000, " \
           "seed 3 at step 12,500 of 16,000." in text
    assert "Unfinished" not in "\n".join(q.table("dcgan-mnist", [dict(rows[0], step=16000)]))
    assert "nan" not in text and "n/a s wall per run" in text and text.count("| n/a |") == 3   # (no wall recorded)


def test_reference_fid_scores_the_torch_generator_far_above_the_floor(capsys):
    """The yardstick script runs end to end on the shared generator and MNIST (a few samples)."""
    import reference_fid
    reference_fid.main(["--n", "200", "--seeds", "1", "--data-dir", str(shared_data("mnist")),
                        "--weights", str(shared_data("torch-dcgan-mnist", "generator.npz"))])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| torch DCGAN")]
    assert len(rows) == 1
    fid, floor = (float(v) for v in rows[0].split("|")[3:5])
    assert fid > 2 * floor > 0


def test_launch_table_ranks_kernels_by_launches_per_step():
    """gan_step --count-launches' breakdown: launches and GPU microseconds per step, most launched
    first; a profiler without per-event times still gives the counts."""
    import types

    def event(name, us=None):
        e = types.SimpleNamespace(name=name)
        if us is not None:
            e.time_range = types.SimpleNamespace(elapsed_us=lambda: us)
        return e
    names = ["gemm"] * 6 + ["cupy_add"] * 9 + ["im2col"] * 3
    table = gan_step.launch_table([event(n, 10) for n in names], steps=3).splitlines()
    assert table[0] == "minigan's most launched kernels (3 names; per step):"
    assert [line.split() for line in table[2:]] == [["3.0", "30", "cupy_add"], ["2.0", "20", "gemm"],
                                                    ["1.0", "10", "im2col"]]
    table = gan_step.launch_table([event("k" * 90), event("k" * 90)], steps=1, rows=1).splitlines()
    assert table[2].split() == ["2.0", "0", "k" * 70]


def test_quality_header_names_the_backend_only_under_cupy(monkeypatch):
    """quality.py's header line says where a cupy table ran (the GPU, the fused kernels' state) and
    adds nothing on numpy; without a readable GPU it says so rather than failing the table."""
    import quality
    from minigan.ops import _cupy
    monkeypatch.delenv("MINIGAN_BACKEND", raising=False)
    assert quality.backend_note() == ""
    monkeypatch.setenv("MINIGAN_BACKEND", "numpy")
    assert quality.backend_note() == ""
    monkeypatch.setenv("MINIGAN_BACKEND", "cupy")
    monkeypatch.setitem(sys.modules, "cupy", None)          # (import cupy fails, as on a machine without it)
    with kernels_enabled(_cupy, False):
        assert quality.backend_note() == (" Backend cupy (MINIGAN_BACKEND) on a CUDA GPU (name not read: "
                                          "ModuleNotFoundError), fused CuPy kernels off.")


@pytest.mark.parametrize("flag, says", [("on", "fusion on"), ("off", "fusion off"), ("default", "fusion on")])
def test_gan_step_fusion_flag_sets_the_switch_its_header_reports(flag, says):
    """``gan_step.py --fusion`` (a subprocess: the script sets threads and the switch for its whole
    process); the header reads the numpy switch after the timing, so it names the setting that ran."""
    import subprocess
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, gan_step.__file__, "--workload", "mixture", "--repeats", "1", "--steps-per-repeat", "1",
                          "--no-memory", "--threads", "1", "--fusion", flag],
                         capture_output=True, text=True, check=True).stdout
    assert f"ABBA, {says}" in out and "ratio minigan/torch" in out
