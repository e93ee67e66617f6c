"""The presets' quality over many seeds, regenerated from the runs it measures: mode coverage of the
2-D mixtures beside PacGAN's Table 1; FID against its real-vs-real floor and the digit KL for the MNIST
presets; modes out of 1,000 for stacked MNIST.

    python benchmarks/quality.py [--presets ring8 grid25] [--seeds 10] [--first-seed 0] [--jobs 1]
                                 [--runs runs/quality] [--set KEY=VALUE ...] [--from-runs] [--draws K]
    MINIGAN_DATA=../shared/data/mnist python benchmarks/quality.py --presets mlp-mnist --seeds 3

Each (preset, seed) is trained exactly as a user would: ``minigan train --preset P --seed S --out
RUNS/P/seed_S --quiet`` (the preset's default recipe, plus any ``--set``), then scored with
``minigan eval RUNS/P/seed_S --json`` (2,500 samples, PacGAN protocol: high quality = within 3 std of
the nearest mode; a mode is captured with >= 1 high-quality sample; reverse KL of the high-quality mode
histogram; the sampler the run chose by measurement).  A run already complete is not trained again;
``--from-runs`` only scores the runs found.  The recipe in the table is read from each run's
config.json, so a table can always be regenerated from the runs it came from.

MNIST presets: ``minigan eval`` scores 5,000 samples against 5,000 real images (classifier features,
minigan.metrics), beside the floor of two disjoint real halves; the goal is FID <= 2x that floor and a
digit KL <= 0.01.  One scoring is one draw of the noise and the real halves, and a noisy one (the FID moves
9-17 %, the floor ~25 %; benchmarks/quality.md, session 43): ``--draws K`` scores each run on eval seeds
0..K-1 as well and counts the goal again on the draws' means (mean FID / mean floor).  Stacked MNIST: 26,000
samples, modes found out of 1,000 and the KL to uniform.

Each preset's table (mean +- std over seeds, the worst seed, seconds per training step -- the median of
the log's per-step times, evaluations excluded -- wall time per run, seeds meeting the issue's goal)
replaces the part of benchmarks/quality.md between that preset's two ``quality.py`` markers (a preset
without markers yet is added after the last table), or is printed with ``--out -``.  Wall time is the
whole ``minigan train`` process; with ``--jobs 2`` two runs share the machine and each gets one BLAS
thread (say so when you quote it).
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from conditions import LoadMeter, cpu_model, openblas_env  # noqa: E402

from minigan.gan.models import BOOKKEEPING  # noqa: E402
from minigan.gan.trainer import read_checkpoint  # noqa: E402

PACGAN = {  # Lin et al. 2018, Table 1: (modes, high-quality %, reverse KL)
    "ring8": [("GAN", "6.3 +- 0.5", "98.2 +- 0.2", "0.45 +- 0.09"), ("PacGAN2", "7.9 +- 0.1", "95.6 +- 2.0", "0.07 +- 0.03")],
    "grid25": [("GAN", "17.3 +- 0.8", "94.8 +- 0.7", "0.70 +- 0.07"), ("PacGAN2", "23.8 +- 0.7", "91.3 +- 0.8", "0.13 +- 0.04")],
}
GOALS = {"ring8": (8, 0.98, 0.05), "grid25": (25, 0.95, 0.03)}     # the targets: modes, HQ, reverse KL
IMAGE_GOALS = {p: (2.0, 0.01) for p in ("mlp-mnist", "dcgan-mnist", "resnet-mnist")}   # FID / floor, digit KL
STACKED_GOALS = {"dcgan-stacked": (1000, 0.05)}                      # modes of 1,000, KL to uniform
PRESETS = sorted(GOALS) + sorted(IMAGE_GOALS) + sorted(STACKED_GOALS)


def markers(preset):
    return (f"<!-- quality.py: {preset} begin (generated; edit outside) -->", f"<!-- quality.py: {preset} end -->")


def minigan(*args, threads=None):
    env = dict(os.environ)
    if threads:
        env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    return subprocess.run([sys.executable, "-m", "minigan", *args], capture_output=True, text=True, env=env)


def train(preset, seed, run, sets, threads):
    """Train (or finish) one run; -> wall seconds of the training process (None if it was complete)."""
    if (run / "checkpoint.npz").exists():
        tree = read_checkpoint(run)              # the run's own step and target, as `minigan train --resume` reads them
        if int(tree["step"]) >= json.loads(str(tree["config"]))["recipe"]["steps"]:
            return None
        args = ["train", "--resume", str(run), "--quiet"]
    else:
        args = ["train", "--preset", preset, "--seed", str(seed), "--out", str(run), "--quiet"]
        args += [a for kv in sets for a in ("--set", kv)]
    t0 = time.time()
    r = minigan(*args, threads=threads)
    took = time.time() - t0
    if r.returncode:
        raise SystemExit(f"minigan {' '.join(args)} failed:\n{r.stderr}")
    (run / "wall_seconds.txt").write_text(f"{took:.1f}\n")
    return took


def score(run, draws=1):
    r = minigan("eval", str(run), "--json", *(["--draws", str(draws)] if draws > 1 else []))
    if r.returncode:
        raise SystemExit(f"minigan eval {run} failed:\n{r.stderr}")
    m = json.loads(r.stdout.strip().splitlines()[-1])
    if m.get("reverse_kl", 0) is None:    # (strict JSON: no high-quality sample, an infinite KL)
        m["reverse_kl"] = float("inf")
    cfg = json.loads((run / "config.json").read_text())
    wall = run / "wall_seconds.txt"
    m["wall"] = float(wall.read_text()) if wall.exists() else float("nan")
    m["recipe"], m["seed"] = cfg["recipe"], cfg["seed"]
    m["step_s"] = step_seconds(run)
    return m


def step_seconds(run):
    """Median seconds of one training step, from the per-step "time" of the run's log.jsonl (the step
    itself: evaluations, pictures and checkpoints excluded); NaN without any.  A torn last line (a
    killed run) is skipped."""
    times = []
    log = run / "log.jsonl"
    for line in (log.read_text().splitlines() if log.exists() else []):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "time" in rec and "loss_d" in rec:
            times.append(rec["time"])
    return float(np.median(times)) if times else float("nan")


def mean_std(values):
    v = np.asarray(values, dtype=np.float64)
    return v.mean(), (v.std(ddof=1) if len(v) > 1 else float("nan"))


def pm(stats, digits, scale=1.0):
    """Format a (mean, std) pair of mean_std as "mean +- std" with `digits` decimals; a single seed has no
    spread, so just its value (the summary names the count: n_seeds)."""
    mean, std = stats
    if np.isnan(mean):
        return "n/a"                  # (e.g. the wall time of runs trained elsewhere and only rescored)
    if np.isnan(std):
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} +- {scale * std:.{digits}f}"


def num(value, digits):
    """A table cell: value with ``digits`` decimals, "n/a" for NaN (not recorded)."""
    return "n/a" if np.isnan(value) else f"{value:.{digits}f}"


def n_seeds(rows, how="{n} seeds (mean +- std)"):
    """How many seeds a summary is over: ``how`` formatted with n, or "1 seed" (no spread to give)."""
    return "1 seed" if len(rows) == 1 else how.format(n=len(rows))


def recipe_line(rows):
    """The first run's recipe, and the keys in which the runs' recipes differ: training keys loudly (the
    rows are not one recipe), BOOKKEEPING keys apart (the same weights; each row names its sampler)."""
    first = rows[0]["recipe"]
    differ = sorted({k for r in rows for k in {*r["recipe"], *first} if r["recipe"].get(k, ()) != first.get(k, ())})
    training = [k for k in differ if k not in BOOKKEEPING]
    bookkeeping = [k for k in differ if k in BOOKKEEPING]
    said = f"; THE RUNS DIFFER in {', '.join(training)}: the first run's shown" if training else ""
    if bookkeeping:
        said += (f"; {'also' if training else 'the runs differ only'} in {', '.join(bookkeeping)}, which never "
                 f"change the weights (each row names the sampler its run chose)")
    recipe = {k: v for k, v in sorted(first.items()) if k not in ("sample_every", "checkpoint_every")}
    return f"Recipe (read from the runs' config.json{said}): `{json.dumps(recipe)}`"


def section(preset, rows, summary_lines, columns, cell):
    """A preset's section: heading, recipe, ``summary_lines``, then one table row per seed (``cell(r)`` ->
    the row's cells after the seed, under ``columns``)."""
    # ("step", from `minigan eval`'s JSON, is the checkpoint's step: below the recipe's for a run cut off)
    unfinished = [r for r in rows if r.get("step") is not None and r["step"] < r["recipe"]["steps"]]
    if unfinished:      # (a run cut off, e.g. at a device call's limit: scored at its last checkpoint)
        summary_lines = [*summary_lines, "", "**Unfinished runs**, scored at their last checkpoint: " + ", ".join(
            f"seed {r['seed']} at step {r['step']:,} of {r['recipe']['steps']:,}"
            for r in sorted(unfinished, key=lambda r: r["seed"])) + "."]
    lines = [f"## {preset}", "", recipe_line(rows), "", *summary_lines, "",
             "| " + " | ".join(["seed", *columns]) + " |", "|" + "---|" * (len(columns) + 1)]
    lines += ["| " + " | ".join([str(r["seed"]), *cell(r)]) + " |" for r in sorted(rows, key=lambda r: r["seed"])]
    return lines + [""]


def table(preset, rows):
    if preset in IMAGE_GOALS:
        return image_table(preset, rows)
    if preset in STACKED_GOALS:
        return stacked_table(preset, rows)
    g_modes, g_hq, g_kl = GOALS[preset]
    ok = [r["modes"] == g_modes and r["hq_fraction"] >= g_hq and r["reverse_kl"] <= g_kl for r in rows]
    modes, hq, kl, wall = (mean_std([r[k] for r in rows]) for k in ("modes", "hq_fraction", "reverse_kl", "wall"))
    worst = min(rows, key=lambda r: (r["modes"], r["hq_fraction"] - r["reverse_kl"]))
    summary_lines = ["| method | modes | high quality % | reverse KL |", "|---|---|---|---|",
                     f"| minigan `{preset}` ({n_seeds(rows, '{n} seeds, mean +- std')}) | {pm(modes, 2)} | "
                     f"{pm(hq, 1, 100)} | {pm(kl, 3)} |"]
    truncated = all("untruncated" in r for r in rows)       # Jacobian truncation: each sampler also untruncated
    if truncated:
        un = [r["untruncated"] for r in rows]
        u_ok = [u["modes"] == g_modes and u["hq_fraction"] >= g_hq and u["reverse_kl"] <= g_kl for u in un]
        u_modes, u_hq, u_kl = (mean_std([u[k] for u in un]) for k in ("modes", "hq_fraction", "reverse_kl"))
        summary_lines[-1] = summary_lines[-1].replace(") |", f", Jacobian truncation {rows[0]['truncate']:g}) |", 1)
        summary_lines.append(f"| the same runs untruncated (same noise, truncate 0) | {pm(u_modes, 2)} | "
                             f"{pm(u_hq, 1, 100)} | {pm(u_kl, 3)} |")
    summary_lines += [f"| {name} (PacGAN Table 1) | {a} | {b} | {c} |" for name, a, b, c in PACGAN[preset]]
    summary_lines += ["", f"Seeds meeting the goal ({g_modes}/{g_modes} modes, HQ >= {100 * g_hq:.0f} %, reverse KL "
                          f"<= {g_kl}): **{sum(ok)}/{len(rows)}**"
                          f"{f' ({sum(u_ok)}/{len(rows)} untruncated)' if truncated else ''}. Worst seed: {worst['seed']} "
                          f"({worst['modes']}/{g_modes} modes, {100 * worst['hq_fraction']:.1f} %, KL "
                          f"{worst['reverse_kl']:.3f}). Wall time per run: {pm(wall, 0)} s."]
    columns = ["modes", "HQ %", "reverse KL", "sampler", "s/step", "wall s"]
    if truncated:
        columns.insert(2, "HQ % untruncated")

    def cell(r):
        cells = [str(r["modes"]), f"{100 * r['hq_fraction']:.1f}", f"{r['reverse_kl']:.3f}", r["sampler"],
                 f"{r['step_s']:.4f}", num(r['wall'], 0)]
        if truncated:
            cells.insert(2, f"{100 * r['untruncated']['hq_fraction']:.1f}")
        return cells
    return section(preset, rows, summary_lines, columns, cell)


def image_table(preset, rows):
    """MNIST presets: FID (classifier features) against the real-vs-real floor, digit KL, the rest."""
    g_ratio, g_kl = IMAGE_GOALS[preset]
    for r in rows:
        r["ratio"] = r["fid"] / r["floor"]["fid"]
    ok = [r["ratio"] <= g_ratio and r["digit_kl"] <= g_kl for r in rows]
    fid_, ratio, kl, step, wall = (mean_std([r[k] for r in rows]) for k in ("fid", "ratio", "digit_kl", "step_s", "wall"))
    worst = max(rows, key=lambda r: r["ratio"])
    summary_line = (f"{n_seeds(rows)}: FID {pm(fid_, 2)}, **{pm(ratio, 1)} "
                    f"x the real-vs-real floor**, digit KL {pm(kl, 4)}; {step[0]:.3f} s/step, "
                    f"{pm(wall, 0)} s wall per run. Seeds meeting the goal (FID <= {g_ratio:g}x the floor, "
                    f"digit KL <= {g_kl}): **{sum(ok)}/{len(rows)}**. Worst seed: {worst['seed']} ({worst['ratio']:.1f}x).")
    lines, columns = [summary_line], ["FID", "floor", "FID / floor", "digit KL", "inception score", "precision",
                                      "recall", "sampler", "s/step", "wall s"]
    drawn = all("draws" in r for r in rows)
    if drawn:       # (minigan eval --draws K: one scoring is one noisy draw; the goal again on the K draws' means)
        for r in rows:
            mean = r["draws"]["mean"]
            r["draws_ratio"] = mean["fid"] / mean["floor"]["fid"]
        d_ok = [r["draws_ratio"] <= g_ratio and r["draws"]["mean"]["digit_kl"] <= g_kl for r in rows]
        seeds = sorted({tuple(r["draws"]["seeds"]) for r in rows})
        lines.append(f"Each run also scored on eval seeds {', '.join(' / '.join(map(str, s)) for s in seeds)} "
                     f"(`minigan eval --draws`): mean FID {pm(mean_std([r['draws']['mean']['fid'] for r in rows]), 2)}, "
                     f"**{pm(mean_std([r['draws_ratio'] for r in rows]), 1)} x the mean floor**; seeds meeting the "
                     f"goal on the draws' means: **{sum(d_ok)}/{len(rows)}**.")
        columns[3:3] = ["FID over the draws", "FID / floor over the draws"]

    def cell(r):
        cells = [f"{r['fid']:.2f}", f"{r['floor']['fid']:.2f}", f"{r['ratio']:.1f}", f"{r['digit_kl']:.4f}",
                 f"{r['inception_score']:.2f}", f"{r['precision']:.3f}", f"{r['recall']:.3f}", r["sampler"],
                 f"{r['step_s']:.3f}", num(r['wall'], 0)]
        if drawn:
            cells[3:3] = [f"{r['draws']['mean']['fid']:.2f} +- {r['draws']['std']['fid']:.2f}", f"{r['draws_ratio']:.1f}"]
        return cells
    return section(preset, rows, lines, columns, cell)


def stacked_table(preset, rows):
    """Stacked MNIST: modes found out of 1,000 and the KL of their histogram to uniform."""
    g_modes, g_kl = STACKED_GOALS[preset]
    ok = [r["modes"] >= g_modes and r["kl"] <= g_kl for r in rows]
    modes, kl, step, wall = (mean_std([r[k] for r in rows]) for k in ("modes", "kl", "step_s", "wall"))
    summary_line = (f"{n_seeds(rows)}: {pm(modes, 1)} modes of 1,000, KL {pm(kl, 3)} "
                    f"(PacDCGAN2, PacGAN's stacked-MNIST table: KL 0.06); {step[0]:.3f} s/step. Seeds meeting "
                    f"the goal ({g_modes} modes, KL <= {g_kl}): **{sum(ok)}/{len(rows)}**.")
    return section(preset, rows, [summary_line], ["modes", "KL", "floor modes", "floor KL", "sampler", "s/step", "wall s"],
                   lambda r: [str(r["modes"]), f"{r['kl']:.3f}", str(r["floor"]["modes"]), f"{r['floor']['kl']:.3f}",
                              r["sampler"], f"{r['step_s']:.3f}", num(r['wall'], 0)])


def block(preset, lines):
    """``lines`` between ``preset``'s two markers."""
    begin, end = markers(preset)
    return "\n".join([begin, *lines, end])


def write_block(out, preset, lines):
    """Replace ``preset``'s block of ``out`` (between its markers), or add one after the last block."""
    begin, end = markers(preset)
    new = block(preset, lines)
    old = out.read_text() if out.exists() else ""
    if begin in old and end in old:
        return old[:old.index(begin)] + new + old[old.index(end) + len(end):]
    last = max((m.end() for m in re.finditer(r"<!-- quality.py: \S+ end -->", old)), default=None)
    if last is None:
        return old + ("\n" if old else "") + new + "\n"
    return old[:last] + "\n\n" + new + old[last:]


def backend_note():
    """'' on numpy; under MINIGAN_BACKEND=cupy (which every run inherits) the GPU's name and whether the
    fused CuPy kernels were on, so that a table says where it was trained or scored."""
    if os.environ.get("MINIGAN_BACKEND", "numpy").strip().lower() != "cupy":
        return ""
    from minigan.ops import _cupy
    try:
        import cupy
        name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
    except Exception as e:                       # (the header must not cost the table)
        name = f"a CUDA GPU (name not read: {type(e).__name__})"
    return f" Backend cupy (MINIGAN_BACKEND) on {name}, fused CuPy kernels {'on' if _cupy.enabled() else 'off'}."


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["ring8", "grid25"], choices=PRESETS)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (each then gets one BLAS thread)")
    ap.add_argument("--runs", default="runs/quality", help="where the runs live (RUNS/PRESET/seed_S)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe override for new runs")
    ap.add_argument("--from-runs", action="store_true", help="score the runs found; train nothing")
    ap.add_argument("--draws", type=int, default=1, metavar="K",
                    help="MNIST presets: also score each run on eval seeds 0..K-1 (minigan eval --draws K) and give "
                         "the goal on the draws' means (default 1: eval seed 0 alone)")
    ap.add_argument("--out", default=str(HERE / "quality.md"), help="markdown file to update, or - for stdout")
    args = ap.parse_args()
    if args.draws < 1:
        ap.error(f"--draws must be >= 1, got {args.draws}")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    threads = 1 if args.jobs > 1 else None
    import minigan
    meter = LoadMeter()
    how = ("rescored from existing runs (the wall times are those recorded when each was trained)" if args.from_runs
           else f"{args.jobs} run(s) at once{', one BLAS thread each' if threads else ''}")
    header = [f"{datetime.date.today().isoformat()}: `python benchmarks/quality.py {' '.join(sys.argv[1:])}`; every "
              f"run is `minigan train` then `minigan eval` (see the script). {cpu_model()} ({os.cpu_count()} cores), "
              f"{openblas_env()}, {how}; minigan {minigan.__version__}, numpy {np.__version__}, "
              f"Python {platform.python_version()}.{backend_note()}", ""]
    blocks = {}
    for preset in args.presets:
        runs = [Path(args.runs) / preset / f"seed_{s}" for s in seeds]
        if not args.from_runs:
            with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
                for s, took in zip(seeds, pool.map(lambda sr: train(preset, sr[0], sr[1], args.set, threads),
                                                   zip(seeds, runs))):
                    print(f"{preset} seed {s}: " + ("complete already" if took is None else f"trained in {took:.0f} s"),
                          file=sys.stderr, flush=True)
        rows = []
        for run in runs:
            if not (run / "checkpoint.npz").exists():
                print(f"{run}: no run, skipped", file=sys.stderr)
                continue
            m = score(run, args.draws if preset in IMAGE_GOALS else 1)
            rows.append(m)
            print(f"{preset} seed {m['seed']}: {summary(m)} ({m['sampler']})", file=sys.stderr, flush=True)
        if rows:
            blocks[preset] = table(preset, rows)
    share = meter.share()
    if share is not None and not args.from_runs:
        header += [f"Other processes used {100 * share:.0f} % of the CPUs while this ran"
                   f"{' (UNDER LOAD: the wall times are upper bounds)' if share > 0.1 else ''}.", ""]
    if args.out == "-":
        for preset, lines in blocks.items():
            print(block(preset, header + lines))
        return
    out = Path(args.out)
    for preset, lines in blocks.items():
        out.write_text(write_block(out, preset, header + lines))
    print(f"wrote {out}" if blocks else "no runs found: nothing written", file=sys.stderr)


def summary(m):
    if "hq_fraction" in m:
        return f"{m['modes']}/{m['n_modes']} modes, HQ {100 * m['hq_fraction']:.1f} %, reverse KL {m['reverse_kl']:.3f}"
    if "digit_kl" in m:
        return f"FID {m['fid']:.2f} (floor {m['floor']['fid']:.2f}), digit KL {m['digit_kl']:.4f}"
    return f"{m['modes']}/1000 modes, KL {m['kl']:.3f}"


if __name__ == "__main__":
    main()
