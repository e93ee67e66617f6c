"""Command line: ``minigan train | sample | eval | gradcheck`` (``minigan SUBCOMMAND --help``)."""
import argparse
import math
import os
import sys

import numpy as np

from . import nn
from .backend import BackendError, has_cupy, to_backend, xp_for
from .gan.losses import OBJECTIVES, gan_objective
from .gradcheck import check_jvp, check_loss, check_net, rel_error
from .ops.losses import bce_with_logits

TOLERANCE = 1e-7


def _away_from_zero(rng, shape, margin=0.05):
    """Inputs whose |x| >= margin: finite differences never straddle a kink at 0."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(margin, 1.5, size=shape)


def layer_cases():
    """(name, configuration, layer or list of layers, input shape, train) for every layer."""
    C, CT = nn.Conv2d, nn.ConvTranspose2d
    return [
        ("Linear", "5->3", nn.Linear(5, 3), (4, 5), True),
        ("Linear", "5->3, no bias, 3-d input", nn.Linear(5, 3, bias=False), (2, 3, 5), True),
        ("Conv2d", "k3 s1 p1", C(2, 3, 3, padding=1), (2, 2, 5, 5), True),
        ("Conv2d", "k(3,2) s(2,1) p(1,0) d(1,2)", C(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
         (2, 2, 7, 6), True),
        ("Conv2d", "k4 padding='same' d2, no bias", C(2, 2, 4, padding="same", dilation=2, bias=False), (1, 2, 6, 5), True),
        ("Conv2d", "k3 s1 p1 4->1 (as convT)", C(4, 1, 3, padding=1), (2, 4, 5, 5), True),     # ops/conv.py _output_side
        ("ConvTranspose2d", "k3 s2 p1 op1", CT(2, 3, 3, stride=2, padding=1, output_padding=1), (2, 2, 3, 4), True),
        ("ConvTranspose2d", "k(2,3) s(1,3) p(0,1) op(1,2) d(2,1)",
         CT(3, 2, (2, 3), stride=(1, 3), padding=(0, 1), output_padding=(1, 2), dilation=(2, 1)), (2, 3, 3, 3), True),
        ("BatchNorm1d", "train, (N, C)", nn.BatchNorm1d(3), (5, 3), True),
        ("BatchNorm1d", "train, (N, C, L)", nn.BatchNorm1d(3), (4, 3, 2), True),
        ("BatchNorm2d", "train", nn.BatchNorm2d(3), (3, 3, 2, 3), True),
        ("BatchNorm2d", "eval", nn.BatchNorm2d(3), (3, 3, 2, 3), False),
        ("BatchNorm2d", "train, affine=False", nn.BatchNorm2d(2, affine=False), (3, 2, 2, 2), True),
        ("LayerNorm", "(3, 4)", nn.LayerNorm((3, 4)), (2, 3, 4), True),
        ("Dropout", "p=0.3, train", nn.Dropout(0.3), (4, 6), True),
        ("ReLU", "", nn.ReLU(), (3, 4), True),
        ("LeakyReLU", "slope 0.2", nn.LeakyReLU(0.2), (3, 4), True),
        ("Tanh", "", nn.Tanh(), (3, 4), True),
        ("Sigmoid", "", nn.Sigmoid(), (3, 4), True),
        ("Flatten", "", [nn.Flatten(), nn.Linear(12, 2)], (2, 3, 2, 2), True),
        ("Reshape", "(3, 2, 2)", [nn.Linear(4, 12), nn.Reshape(3, 2, 2)], (2, 4), True),
        ("Upsample", "x2", nn.Upsample(2), (2, 2, 3, 2), True),
        ("AvgPool2d", "k2", nn.AvgPool2d(2), (2, 2, 4, 5), True),
        ("AvgPool2d", "k3 s2 p1 count_include_pad=False", nn.AvgPool2d(3, 2, 1, count_include_pad=False),
         (2, 2, 5, 4), True),
        ("Residual", "conv-BN-ReLU-conv + 1x1 conv shortcut",
         nn.Residual(nn.Sequential(C(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU(), C(3, 3, 3, padding=1), _init=False),
                     C(2, 3, 1)), (2, 2, 4, 4), True),
        ("Upsample+Conv2d", "x2, k3 p1 (fused: convT k4 s2 p1)", [nn.Upsample(2), C(2, 3, 3, padding=1)], (2, 2, 3, 4),
         True),                                                                                 # minigan/nn/fuse.py
        ("Upsample+Conv2d", "x2, k1 (fused: conv first)", [nn.Upsample(2), C(2, 3, 1)], (2, 2, 3, 2), True),
        ("Conv2d+AvgPool2d", "k3 p1, k2 (fused: conv k4 s2 p1)", [C(2, 3, 3, padding=1), nn.AvgPool2d(2)], (2, 2, 5, 4),
         True),
        ("Conv2d+AvgPool2d", "k1, k2 (fused: pool first)", [C(2, 3, 1), nn.AvgPool2d(2)], (2, 2, 4, 5), True),
        ("SpectralNorm", "Conv2d k3 p1, train", nn.SpectralNorm(C(2, 3, 3, padding=1)), (2, 2, 4, 4), True),
        ("SpectralNorm", "ConvTranspose2d k2 s2 (dim 1)", nn.SpectralNorm(CT(3, 2, 2, stride=2)), (2, 3, 2, 3), True),
    ]


def run_gradcheck(backends, out=sys.stdout):
    """Print one row per op and configuration; return the number of failures."""
    failures = 0
    print(f"{'backend':8} {'op':20} {'configuration':40} {'max rel error':>14}  result", file=out)
    for backend in backends:
        for i, (name, config, layer, shape, train) in enumerate(layer_cases()):
            layers = layer if isinstance(layer, list) else [layer]
            net = nn.Sequential(*layers, dtype=np.float64, seed=i).to(backend)
            rng = np.random.default_rng(100 + i)
            x = to_backend(_away_from_zero(rng, shape), backend)
            config += "" if train or "eval" in config else " (eval)"
            failures += _row(backend, name, config, max(check_net(net, x, train=train, seed=i).values()), out)
            # second order: jvp and backward_jvp against five-point differences along their tangents
            failures += _row(backend, name + " (2nd)", config, max(check_jvp(net, x, train=train, seed=i).values()), out)
        rng = np.random.default_rng(7)
        logits = to_backend(rng.normal(0, 3, (6, 1)), backend)
        target = to_backend(rng.uniform(0, 1, (6, 1)), backend)
        err = check_loss(lambda z: bce_with_logits(z, target), [logits])[0]
        failures += _row(backend, "bce_with_logits", "soft targets", err, out)
        for obj_name in OBJECTIVES:
            obj = gan_objective(obj_name)
            r = to_backend(_away_from_zero(rng, (5, 1)) * 2 + 0.0, backend)
            f = to_backend(_away_from_zero(rng, (5, 1)) * 2, backend)
            r[abs(abs(r) - 1) < 0.05] += 0.1     # keep hinge's kinks at +-1 out of reach
            f[abs(abs(f) - 1) < 0.05] += 0.1
            failures += _row(backend, obj_name, "d_loss", max(check_loss(obj.d_loss, [r, f])), out)
            failures += _row(backend, obj_name, "g_loss", check_loss(obj.g_loss, [f])[0], out)
            # second order: the logit HVP is the derivative of the logit gradient along the tangent
            rd, fd = (to_backend(rng.standard_normal((5, 1)), backend) for _ in range(2))
            hr, hf = obj.d_loss_jvp(r, f, rd, fd)
            hg = obj.g_loss_jvp(f, fd)
            err = max(_hvp_error(lambda a, b: obj.d_loss(a, b)[1:], [r, f], [rd, fd], [hr, hf]),
                      _hvp_error(lambda b: obj.g_loss(b)[1:], [f], [fd], [hg]))
            failures += _row(backend, obj_name + " (2nd)", "d_loss, g_loss HVP", err, out)
    print(f"{'all passed' if not failures else f'{failures} FAILED'} (tolerance {TOLERANCE:g})", file=out)
    return failures


def _hvp_error(grad_fn, xs, dots, analytic, h=1e-5):
    """max relative error of analytic HVPs against the five-point difference of ``grad_fn`` along ``dots``."""
    at = [grad_fn(*[x + t * h * d for x, d in zip(xs, dots)]) for t in (2, 1, -1, -2)]
    numeric = [(8 * (b - c) - (a - d)) / (12 * h) for a, b, c, d in zip(*at)]
    return max(rel_error(a, n, floor=1e-12) for a, n in zip(analytic, numeric))


def _row(backend, name, config, err, out):
    ok = err <= TOLERANCE
    print(f"{backend:8} {name:20} {config:40} {err:14.3e}  {'ok' if ok else 'FAIL'}", file=out)
    return 0 if ok else 1


class UsageError(Exception):
    """A mistake on the command line: reported in one line, exit status 2."""


def _recipe_overrides(args):
    """--config FILE, then --set KEY=VALUE (repeatable), then the named flags: -> overrides."""
    import json
    overrides = {}
    if args.config:
        try:
            with open(args.config) as f:
                loaded = json.load(f)
        except (OSError, ValueError) as e:
            raise UsageError(f"--config {args.config}: cannot read a JSON recipe ({e})") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"--config {args.config}: expected a JSON object of recipe keys, got {type(loaded).__name__}")
        overrides.update(loaded)
    for item in args.set or []:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = json.loads(text)
        except ValueError:
            overrides[key.strip()] = text                 # a bare string, e.g. --set objective=hinge
    named = (("batch_size", args.batch_size), ("penalty", args.penalty), ("penalty_weight", args.penalty_weight),
             ("penalty_every", args.penalty_every), ("steps", args.steps))
    overrides.update({k: v for k, v in named if v is not None})
    if args.spectral_norm:
        overrides["spectral_norm"] = True
    return overrides


def _train(args):
    from .data import DataError
    from .gan.models import PRESETS
    from .gan.trainer import CHECKPOINT, CONFIG, LOG, SAMPLES, Trainer

    if args.preset is not None and args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise UsageError(f"data directory {args.data_dir} does not exist")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.resume:
        recipe_flags = (args.batch_size, args.seed, args.out, args.penalty, args.penalty_weight, args.penalty_every,
                        args.config, args.set)
        if any(v is not None for v in recipe_flags) or args.spectral_norm:
            raise UsageError("--batch-size, --seed, --out, --penalty*, --spectral-norm, --set and --config belong "
                             "to the original run and cannot change on --resume")
    if args.download:
        from .data import download_mnist
        args.data_dir = str(download_mnist(args.data_dir))
    if args.resume:
        t = Trainer.resume(args.resume, data_dir=args.data_dir, backend=args.backend, preset=args.preset)
        steps = args.steps if args.steps is not None else int(t.recipe["steps"])   # the run's own target
        if steps <= t.step:
            if args.steps is not None and steps < t.step:
                raise UsageError(f"--steps {steps} is below the {t.step} steps the run already has")
            print(f"the run in {args.resume} is complete: {t.step} of {steps} steps; pass --steps N (N > {t.step}) "
                  f"to train on", file=sys.stderr)
            return 0
    else:
        preset = args.preset or "ring8"
        out = args.out or os.path.join("runs", preset)
        if os.path.exists(out) and not os.path.isdir(out):
            raise UsageError(f"--out {out} is a file; the run directory must be a new or existing folder")
        if os.path.exists(os.path.join(out, CHECKPOINT)):
            raise UsageError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")
        try:                                     # the recipe is checked (recipe_for) before any data is read
            t = Trainer(preset, seed=args.seed or 0, backend=args.backend, out_dir=out, data_dir=args.data_dir,
                        **_recipe_overrides(args))
        except (KeyError, ValueError, TypeError) as e:     # a bad recipe; a batch that does not split over ranks
            if isinstance(e, DataError):
                raise
            raise UsageError(str(e).strip("'\"")) from None
        steps = int(t.recipe["steps"])
    if getattr(t, "split", None) == "test" and t.writer:
        print("minigan train: the MNIST training set (60k) was not found; training on the 10k test set instead "
              "(minigan train --download fetches the full set)", file=sys.stderr)
    t.run(steps, progress=not args.quiet)
    if t.measured is not None:                      # its end-of-training measurement (and the sampler it chose)
        print(_measured_line(t.preset, t.measured), file=sys.stderr)
    if t.writer:                                      # data-parallel: rank 0 speaks for the run
        for name in (CHECKPOINT, LOG, SAMPLES, CONFIG):
            print(os.path.join(str(t.out_dir), name))
    return 0


def _measured_line(preset, m):
    """"ring8, step 10000: 8/8 modes, 100.0 % high quality, reverse KL 0.000 (EMA of G, chosen ... raw G: ...;
    Jacobian truncation 0.1, without it 97.3 % high quality)"; MNIST: "FID 27.60, digit KL 0.0173"; stacked
    MNIST: "1000/1000 modes, KL 0.064"."""
    def say(x):
        if "fid" in x:
            return f"FID {x['fid']:.2f}, digit KL {x['digit_kl']:.4f}"
        if "hq_fraction" not in x:
            return f"{x['modes']}/1000 modes, KL {x['kl']:.3f}"
        return f"{x['modes']}/{m['n_modes']} modes, {100 * x['hq_fraction']:.1f} % high quality, " \
               f"reverse KL {x['reverse_kl']:.3f}"
    notes = []                                  # what the parentheses say after the headline
    if "ema_g" in m:
        names = {"ema": "EMA of G", "raw": "raw G"}
        other = "raw" if m["sampler"] == "ema" else "ema"
        notes.append(f"{names[m['sampler']]}, chosen by measurement over the {names[other]}: {say(m[other + '_g'])}")
    if "untruncated" in m:
        u = m["untruncated"]
        notes.append(f"Jacobian truncation {m['truncate']:g}, without it "
                     + (f"{100 * u['hq_fraction']:.1f} % high quality" if "hq_fraction" in u else say(u)))
    return f"{preset}, step {m['step']}: {say(m)}" + (f" ({'; '.join(notes)})" if notes else "")


def _presets(args):
    import json

    from .gan.models import PRESETS, recipe_for
    for name, preset in PRESETS.items():
        print(f"{name}: {preset.doc}")
        if args.recipes:
            print("  " + json.dumps(recipe_for(name), sort_keys=True))
    return 0


def _sample(args):
    from .gan.trainer import Trainer
    from .gan.truncation import check_truncate

    t = Trainer.resume(args.run_dir, data_dir=args.data_dir, backend=args.backend, repair_log=False)
    if args.label is not None and not t.recipe["conditional"]:
        raise UsageError(f"--label needs a conditional preset; {args.run_dir} is a {t.preset!r} run")
    if args.label is not None and not 0 <= args.label <= 9:
        raise UsageError(f"--label must be a digit 0..9, got {args.label}")
    if args.n < 1:
        raise UsageError(f"--n must be positive, got {args.n}")
    if args.truncate is not None:
        try:
            check_truncate(args.truncate)
        except ValueError as e:
            raise UsageError(f"--{e}") from None
    out = args.out or os.path.join(args.run_dir, "grid.png")
    t.write_samples(out, n=args.n, labels=args.label, seed=args.seed, truncate=args.truncate)
    print(out)
    return 0


def write_curves(run_dir):
    """DIR/curves.png: losses, D outputs, gradient norms and any evaluation metrics against step.
    -> its path, or None when DIR has no log.jsonl or the log has no record to draw (an empty log: a
    checkpoint copied into a directory of its own, say; ``minigan eval`` then still prints its metrics)."""
    import json

    from .viz import curves_figure

    path = os.path.join(run_dir, "log.jsonl")
    if not os.path.exists(path):
        return None
    steps, evals = {}, {}
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue                        # a torn line (a crash mid-write): not drawn
            if not isinstance(rec, dict) or "step" not in rec:
                continue
            if "eval" in rec:
                ev = rec["eval"]
                # with both samplers measured ("ema_g", "raw_g"), the headline repeats one of them
                flat = {} if "ema_g" in ev else {k: v for k, v in ev.items() if not isinstance(v, dict)}
                flat.update({f"{k} {kk}": vv for k, v in ev.items() if isinstance(v, dict)
                             for kk, vv in v.items()})      # e.g. "raw_g hq_fraction" beside the EMA's
                for k, v in flat.items():
                    if isinstance(v, (int, float)) and k not in ("step", "n", "n_modes", "truncate") and math.isfinite(v):
                        evals.setdefault(k, ([], []))
                        evals[k][0].append(rec["step"])
                        evals[k][1].append(v)
            else:
                for k in ("loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g", "penalty"):
                    if isinstance(rec.get(k), (int, float)):
                        steps.setdefault(k, ([], []))
                        steps[k][0].append(rec["step"])
                        steps[k][1].append(rec[k])
    panels = {**steps, **{f"eval {k}": v for k, v in evals.items()}}
    if not panels:
        return None
    out = os.path.join(run_dir, "curves.png")
    return curves_figure(out, panels, f"{os.path.basename(os.path.normpath(run_dir))}: training curves")


def _eval(args):
    import json

    from .gan.trainer import Trainer
    from .metrics import evaluate, summarize_draws

    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.draws < 1:
        raise UsageError(f"--draws must be >= 1, got {args.draws}")
    t = Trainer.resume(args.run_dir, data_dir=args.data_dir, backend=args.backend, repair_log=False)
    result = evaluate(t, n=args.n, seed=args.seed)
    if args.draws > 1:                  # the same metrics on seeds seed+1 ... seed+K-1, then each one's mean and std
        seeds = list(range(args.seed, args.seed + args.draws))
        result["draws"] = {"seeds": seeds, **summarize_draws(
            [result] + [evaluate(t, n=args.n, seed=s) for s in seeds[1:]])}
    curves = write_curves(args.run_dir)
    if curves:
        result["curves"] = curves
    if t.mixture is not None:           # the evaluated samples over the true modes
        result["scatter"] = os.path.join(args.run_dir, "eval_samples.png")
        t.write_samples(result["scatter"], n=result["n"], seed=args.seed)
    result = _json_safe(result)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


def _json_safe(v):
    """Strict JSON: a non-finite number (reverse KL with no high-quality sample) becomes null."""
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def build_parser():
    parser = argparse.ArgumentParser(prog="minigan", description="minigan: an autograd-free GAN engine")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a preset (default: ring8) or continue a run",
                       description="Trains a GAN preset and writes DIR/checkpoint.npz, DIR/log.jsonl and "
                                   "DIR/samples.png (plus DIR/samples/step_*.png during training).")
    from .gan.models import PRESETS
    p.add_argument("--preset", help=f"{', '.join(PRESETS)} (default ring8; `minigan presets` describes them)")
    p.add_argument("--steps", type=int, help="total number of steps (default: the preset's)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the preset's)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--backend", choices=["numpy", "cupy"], help="default: $MINIGAN_BACKEND or numpy")
    p.add_argument("--out", help="run directory (default runs/PRESET)")
    p.add_argument("--data-dir", help="folder with MNIST IDX files (default: $MINIGAN_DATA or the cache)")
    p.add_argument("--download", action="store_true", help="download MNIST (checksummed) into --data-dir or the cache")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR up to --steps total steps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--penalty", choices=["none", "r1", "r2", "wgan_gp"],
                   help="gradient penalty on D, exact (second order by hand; default: the preset's)")
    p.add_argument("--penalty-weight", type=float, help="gamma of R1/R2 or lambda of WGAN-GP (default 10)")
    p.add_argument("--penalty-every", type=int, help="the penalty on every k-th D step, weight x k (default 1)")
    p.add_argument("--spectral-norm", action="store_true", help="spectral normalisation of D's affine layers")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any recipe key (repeatable; VALUE is JSON, or a bare string), e.g. --set objective=hinge")
    p.add_argument("--config", metavar="FILE", help="a JSON object of recipe keys (--set and the flags above win)")

    p = sub.add_parser("sample", help="draw samples from a trained run",
                       description="Writes a picture of samples from the run's generator (its EMA or the raw G, "
                                   "whichever the run chose by measurement).")
    p.add_argument("run_dir", metavar="DIR")
    p.add_argument("--n", type=int, default=64, help="number of samples (default 64; 2500 points for 2-D presets)")
    p.add_argument("--label", type=int, help="digit to draw (conditional presets only)")
    p.add_argument("--out", help="output PNG (default DIR/grid.png)")
    p.add_argument("--seed", type=int, help="noise seed (default: the fixed seed of the training pictures)")
    p.add_argument("--truncate", type=float, metavar="Q",
                   help="Jacobian truncation: redraw the fraction Q of the noise where G is steepest (0: off; "
                        "default: the run's recipe)")
    p.add_argument("--backend", choices=["numpy", "cupy"])
    p.add_argument("--data-dir", help="MNIST folder, if the run's is gone")

    p = sub.add_parser("eval", help="measure a trained run (mode coverage, FID/IS/precision/recall, ...)",
                       description="Prints one JSON object of metrics for the run in DIR and writes "
                                   "DIR/curves.png (losses and metrics against step).")
    p.add_argument("run_dir", metavar="DIR")
    p.add_argument("--json", action="store_true", help="one compact line of JSON")
    p.add_argument("--n", type=int, help="number of generated samples (default: the protocol's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated noise and real subsets")
    p.add_argument("--draws", type=int, default=1, metavar="K",
                   help="also score on seeds SEED+1 ... SEED+K-1 and give each metric's mean and std over the K "
                        "draws (\"draws\"; the top level stays SEED's draw; default 1)")
    p.add_argument("--backend", choices=["numpy", "cupy"])
    p.add_argument("--data-dir", help="MNIST folder, if the run's is gone")

    p = sub.add_parser("presets", help="list the presets (and, with --recipes, their full recipes)",
                       description="Lists every preset with what it trains.")
    p.add_argument("--recipes", action="store_true", help="print each preset's full recipe as JSON")

    p = sub.add_parser("gradcheck", help="check every layer, loss and objective against finite differences",
                       description="Checks every backward pass against float64 central differences on every "
                                   "available backend; exits non-zero on any failure.")
    p.add_argument("--backend", choices=["numpy", "cupy", "all"], default="all",
                   help="backend(s) to check (default: every available one)")
    return parser


def _tune_malloc():
    """Keep glibc from handing each step's freed arrays back to the kernel (minigan.allocator: ~380
    page faults a grid25 step without it); MINIGAN_TUNE_MALLOC=0 leaves malloc as it is."""
    from .allocator import tune_malloc
    try:
        tune_malloc()
    except ValueError as e:
        raise UsageError(str(e)) from None


def main(argv=None):
    from .data import DataError
    from .gan.trainer import CheckpointError, TrainingDiverged

    args = build_parser().parse_args(argv)
    try:
        if args.command in ("train", "sample", "eval"):
            _tune_malloc()
        if args.command == "train":
            return _train(args)
        if args.command == "sample":
            return _sample(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "presets":
            return _presets(args)
        backends = ["numpy"] + (["cupy"] if has_cupy() else []) if args.backend == "all" else [args.backend]
        for b in backends:
            xp_for(b)                     # an unusable backend fails before the table starts
        return 1 if run_gradcheck(backends) else 0
    except UsageError as e:
        print(f"minigan {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (BackendError, DataError, CheckpointError, TrainingDiverged, FileNotFoundError) as e:
        print(f"minigan {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"minigan {args.command}: interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130
    except BrokenPipeError:             # the output's reader went away (e.g. `minigan presets | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
