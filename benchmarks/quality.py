"""Mode coverage of the ring8 and grid25 presets over 10 seeds, beside PacGAN's Table 1.

    python benchmarks/quality.py [--seeds 10] [--presets ring8 grid25] [--out benchmarks/quality.md]

Each seed trains the preset with its default recipe and evaluates 2,500 samples (PacGAN protocol:
high quality = within 3 std of the nearest mode; a mode is captured with >= 1 high-quality sample;
reverse KL of the high-quality mode histogram).  Writes a markdown table (mean +- standard error)
with the device, date and the time it took.
"""
import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np

import minigan
from minigan.gan.trainer import Trainer
from minigan.metrics import evaluate

PACGAN = {  # Lin et al. 2018, Table 1: (modes, high-quality %, reverse KL)
    "ring8": [("GAN", "6.3 +- 0.5", "98.2 +- 0.2", "0.45 +- 0.09"), ("PacGAN2", "7.9 +- 0.1", "95.6 +- 2.0", "0.07 +- 0.03")],
    "grid25": [("GAN", "17.3 +- 0.8", "94.8 +- 0.7", "0.70 +- 0.07"), ("PacGAN2", "23.8 +- 0.7", "91.3 +- 0.8", "0.13 +- 0.04")],
}
GOALS = {"ring8": (8, 0.98, 0.05), "grid25": (25, 0.95, 0.03)}


def mean_se(values):
    v = np.asarray(values, dtype=np.float64)
    se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return v.mean(), se


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--presets", nargs="+", default=["ring8", "grid25"])
    ap.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "quality.md"))
    args = ap.parse_args()
    lines = [f"# Mode coverage on 2-D mixtures, {args.seeds} seeds per preset", "",
             f"{datetime.date.today().isoformat()}; {platform.machine()} CPU ({os.cpu_count()} cores), backend "
             f"{args.backend}, minigan {minigan.__version__}, numpy {np.__version__}; "
             f"`python benchmarks/quality.py --seeds {args.seeds}`.", ""]
    for preset in args.presets:
        rows, t0 = [], time.time()
        for seed in range(args.seeds):
            t = Trainer(preset, seed=seed, backend=args.backend)
            t.run(progress=False)
            m = evaluate(t, seed=1000 + seed)
            rows.append(m)
            print(f"{preset} seed {seed}: {m['modes']}/{m['n_modes']} modes, HQ {100 * m['hq_fraction']:.1f} %, "
                  f"reverse KL {m['reverse_kl']:.3f}", flush=True)
        took = time.time() - t0
        recipe = minigan.gan.recipe_for(preset)
        modes, hq, rkl = (mean_se([r[k] for r in rows]) for k in ("modes", "hq_fraction", "reverse_kl"))
        g_modes, g_hq, g_kl = GOALS[preset]
        ok = sum(r["modes"] == g_modes and r["hq_fraction"] >= g_hq and r["reverse_kl"] <= g_kl for r in rows)
        lines += [f"## {preset}", "",
                  f"Recipe: {recipe['steps']} steps, batch {recipe['batch_size']}, {recipe['objective']}, "
                  f"lr {recipe['lr_g']}/{recipe['lr_d']}, pack {recipe['pack']}, EMA {recipe['ema']}. "
                  f"{args.seeds} seeds took {took:.0f} s ({took / args.seeds:.1f} s each).", "",
                  "| method | modes | high quality % | reverse KL |", "|---|---|---|---|",
                  f"| minigan `{preset}` (this run) | {modes[0]:.2f} +- {modes[1]:.2f} | {100 * hq[0]:.1f} +- {100 * hq[1]:.1f} "
                  f"| {rkl[0]:.3f} +- {rkl[1]:.3f} |"]
        lines += [f"| {name} (PacGAN Table 1) | {a} | {b} | {c} |" for name, a, b, c in PACGAN[preset]]
        lines += ["", f"Seeds meeting the goal ({g_modes}/{g_modes} modes, HQ >= {100 * g_hq:.0f} %, reverse KL <= "
                      f"{g_kl}): {ok}/{args.seeds}.", "",
                  "| seed | modes | HQ % | reverse KL |", "|---|---|---|---|"]
        lines += [f"| {s} | {r['modes']} | {100 * r['hq_fraction']:.1f} | {r['reverse_kl']:.3f} |" for s, r in enumerate(rows)]
        lines.append("")
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
