"""One row of a recipe search: train a preset with recipe overrides on a few seeds and score the EMA
of G and the raw G side by side every ``--every`` steps (2,500 samples, PacGAN protocol).

    python benchmarks/recipe_search.py ring8 '{"betas_g": [0.5, 0.9], "betas_d": [0.5, 0.9]}' 100 101 104 108

Prints one JSON line per seed: the overrides, the wall time, and the trajectory
[step, [modes, HQ %, reverse KL] of the EMA, the same of the raw G].  The search in
benchmarks/quality.md ran rows like this, two seeds at a time with OPENBLAS_NUM_THREADS=1.  (The mixture
presets' width is a recipe key, ``{"width": 96}``; its other architecture rows -- depth, BatchNorm or tanh in
G, a discrete code in z -- patched ``minigan.gan.models._mixture_nets`` by hand; they are not recipe keys.)
"""
import argparse
import json
import time

from minigan.gan.trainer import Trainer
from minigan.metrics import evaluate


def row(m):
    return None if m is None else [m["modes"], round(100 * m["hq_fraction"], 1), round(m["reverse_kl"], 3)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset")
    ap.add_argument("overrides", help="a JSON object of recipe keys")
    ap.add_argument("seeds", type=int, nargs="+")
    ap.add_argument("--every", type=int, default=1000)
    args = ap.parse_args()
    over = json.loads(args.overrides)
    for seed in args.seeds:
        t = Trainer(args.preset, seed=seed, **over)
        t0, traj = time.time(), []
        while t.step < t.recipe["steps"]:
            t.train_step()
            if t.step % args.every == 0 or t.step == t.recipe["steps"]:
                m = evaluate(t, seed=777)
                traj.append([t.step, row(m.get("ema_g", m)), row(m.get("raw_g"))])
        print(json.dumps({"preset": args.preset, "seed": seed, "overrides": over,
                          "seconds": round(time.time() - t0, 1), "trajectory": traj}), flush=True)


if __name__ == "__main__":
    main()
