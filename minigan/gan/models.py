"""Ready models: each preset builds (G, D) and carries its default training recipe.

    G, D = build_nets("dcgan-mnist", seed=0)
    recipe = PRESETS["dcgan-mnist"].recipe
"""
from typing import Callable, NamedTuple

import numpy as np

from .. import nn
from ..data import MIXTURES
from .augment import parse_augment
from .truncation import check_truncate


class Preset(NamedTuple):
    build: Callable     # (recipe) -> list of G layers, list of D layers
    recipe: dict        # the default recipe (see DEFAULT_RECIPE for every key)
    doc: str


DEFAULT_RECIPE = {
    "data": "ring8",              # ring8 | grid25 | mnist | stacked-mnist
    "z_dim": 64,
    "width": 0,                   # hidden width of ring8's / grid25's MLPs (G and D: 3 hidden layers each); 0: a
                                  # preset of fixed architecture (the others, your own nets)
    "objective": "non_saturating",
    "steps": 2000,
    "batch_size": 128,
    "lr_g": 2e-4, "lr_d": 2e-4,
    "betas_g": [0.5, 0.999], "betas_d": [0.5, 0.999],
    "n_critic": 1,                # D updates per G update
    "lr_schedule": "constant",    # constant | cosine | exponential (gamma: lr_gamma per step)
    "lr_gamma": 1.0,
    "grad_clip": 0.0,             # clip each network's global gradient norm (0: off)
    "weight_clip": 0.0,           # clamp D's weights into [-c, c] after each step (WGAN; 0: off)
    "l2": 0.0, "l1": 0.0,         # weight decay (Adam's L2) and L1 on both networks
    "d_dropout": 0.0,             # dropout after D's hidden activations
    "g_norm": "none",             # none | batch: BatchNorm (then ReLU) after each hidden Linear of G, in the MLP
                                  # MNIST presets (mlp-mnist, cgan-mnist); the others' G is fixed
    "d_norm": "none",             # none | batch: BatchNorm after each conv of D but the first, in the DCGAN presets
                                  # (dcgan-mnist, dcgan-stacked); the others' D is fixed
    "d_depth": 0,                 # stride-2 convs in the DCGAN presets' D (their default 2; 3 adds one of 4c
                                  # channels, 7x7 -> 3x3); 0: a preset of fixed D (the others)
    "d_channels": 0,              # channels of the DCGAN presets' D: c in the first conv, doubling in each next (their
                                  # default 64); 0: a preset of fixed D (the others)
    "pack": 1,                    # PacGAN: D judges `pack` samples at once (joined along features/channels)
    "penalty": "none",            # none | r1 (real data) | r2 (fakes) | wgan_gp: exact, second order (gan.penalties)
    "penalty_weight": 10.0,       # gamma of R1/R2, lambda of WGAN-GP
    "penalty_every": 1,           # lazy regularisation (StyleGAN2): the penalty on every k-th D step, weight x k
    "topk": 1.0,                  # top-k training (Sinha et al. 2020): G's update uses only the fraction topk of
                                  # the batch's fakes that D rates most real (largest logits); 1: all of them
    "augment": "none",            # DiffAugment (Zhao et al. 2020): D sees only randomly translated and/or cut-out
                                  # images, real and fake, G's gradient flows back through them: none |
                                  # translation | cutout | translation,cutout (images only; gan.augment)
    "spectral_norm": False,       # wrap D's Linear / Conv2d / ConvTranspose2d layers in SpectralNorm
    "ema": 0.0,                   # decay of the EMA of G's weights used for sampling (0: off); step t uses
                                  # min(ema, (1 + t) / (10 + t)), so ema binds only from t ~ 9 / (1 - ema)
    "ema_bn_batches": 16,         # the EMA of G samples with BatchNorm statistics of its own weights, averaged
                                  # over this many batches of noise (batch_size each; "standing statistics");
                                  # 0: with the raw G's running statistics (runs saved before the key)
    "truncate": 0.0,              # Jacobian truncation: sampling redraws the fraction `truncate` of the noise
                                  # where ||dG/dz||_F is largest (gan.truncation; the bridges between modes)
    "init": "torch",              # torch | dcgan
    "conditional": False,         # G and D see the one-hot label (cgan)
    "sample_every": 500, "checkpoint_every": 500,
    "eval_every": 0,              # evaluate (minigan.metrics.evaluate) into the log every N steps (0: off)
    "eval_samples": 1000,         # generated samples per in-training evaluation
    "select_samples": 0,          # the samples each sampler draws for the end-of-training choice between the EMA
                                  # of G and the raw G (Trainer.choose_sampler, on noise of its own; a 2-D mixture's
                                  # also warns when no sample lies near a mode); 0: no choice at the end (the last
                                  # in-training evaluation's stands, else the EMA's)
    "dtype": "float32",
}

# recipe keys that change what a run writes and measures (pictures, checkpoints, evaluations, the sampler
# choice), never its weights: evaluation draws from its own seeded noise (test_trainer pins this).  A run
# chooses its sampler at its evaluations, so runs apart in these keys may sample differently.
BOOKKEEPING = ("sample_every", "checkpoint_every", "eval_every", "eval_samples", "select_samples")


def _mlp(sizes, act, out_act=None, dropout=0.0, norm=None):
    """Linear layers of ``sizes``; each hidden one followed by ``norm`` (its Linear then has no bias: it
    would cancel), ``act`` and dropout."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        hidden = i < len(sizes) - 2
        layers.append(nn.Linear(a, b, bias=not (hidden and norm)))
        if hidden:
            layers += [norm(b)] if norm else []
            layers.append(act())
            if dropout:
                layers.append(nn.Dropout(dropout))
    if out_act is not None:
        layers.append(out_act())
    return layers


def _lrelu():
    return nn.LeakyReLU(0.2)


def _mixture_nets(r):
    G = _mlp([r["z_dim"]] + [r["width"]] * 3 + [2], nn.ReLU)
    D = _mlp([2 * r["pack"]] + [r["width"]] * 3 + [1], _lrelu, dropout=r["d_dropout"])
    return G, D


def _mlp_mnist(r):
    extra = 10 if r["conditional"] else 0
    sizes = [r["z_dim"] + extra, 256, 512, 1024, 784]
    if r["g_norm"] == "batch":
        G = _mlp(sizes, nn.ReLU, nn.Tanh, norm=nn.BatchNorm1d)
    else:
        G = _mlp(sizes, _lrelu, nn.Tanh)
    G += [nn.Reshape(1, 28, 28)]
    D = [nn.Flatten()] if not extra else []
    D += _mlp([784 * r["pack"] + extra, 512, 256, 1], _lrelu, dropout=r["d_dropout"])
    return G, D


def _dcgan_mnist(r, channels=1):
    G = [nn.Linear(r["z_dim"], 7 * 7 * 256, bias=False), nn.Reshape(256, 7, 7), nn.BatchNorm2d(256), nn.ReLU(),
         nn.ConvTranspose2d(256, 128, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),   # 14x14
         nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),     # 28x28
         nn.Conv2d(64, channels, 3, padding=1), nn.Tanh()]
    drop = [nn.Dropout(r["d_dropout"])] if r["d_dropout"] else []
    norm = r["d_norm"] == "batch"                     # (its conv then has no bias: the norm would cancel it)
    c, size = r["d_channels"], 14
    D = [nn.Conv2d(channels * r["pack"], c, 4, stride=2, padding=1), _lrelu(), *drop]                    # 14x14
    for i in range(1, r["d_depth"]):                   # c -> 2c at 7x7, 2c -> 4c at 3x3, 4c -> 8c at 1x1
        size = (size + 2 - 4) // 2 + 1
        if size < 1:
            raise ValueError(f"d_depth {r['d_depth']} halves 28x28 images below 1x1 (expected d_depth <= 4)")
        D += [nn.Conv2d(c << (i - 1), c << i, 4, stride=2, padding=1, bias=not norm),
              *([nn.BatchNorm2d(c << i)] if norm else []), _lrelu(), *drop]
    D += [nn.Flatten(), nn.Linear((c << (r["d_depth"] - 1)) * size * size, 1)]
    return G, D


def _res_up(cin, cout):
    body = [nn.BatchNorm2d(cin), nn.ReLU(), nn.Upsample(2), nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1)]
    return nn.Residual(body, [nn.Upsample(2), nn.Conv2d(cin, cout, 1)])


def _res_down(cin, cout, first=False):
    body = ([] if first else [_lrelu()]) + [nn.Conv2d(cin, cout, 3, padding=1), _lrelu(),
                                            nn.Conv2d(cout, cout, 3, padding=1), nn.AvgPool2d(2)]
    return nn.Residual(body, [nn.Conv2d(cin, cout, 1), nn.AvgPool2d(2)])


def _resnet_mnist(r, ch=64):
    G = [nn.Linear(r["z_dim"], ch * 7 * 7), nn.Reshape(ch, 7, 7), _res_up(ch, ch), _res_up(ch, ch),   # 14, 28
         nn.BatchNorm2d(ch), nn.ReLU(), nn.Conv2d(ch, 1, 3, padding=1), nn.Tanh()]
    D = [_res_down(r["pack"], ch, first=True), _res_down(ch, ch), _lrelu(), nn.Flatten(), nn.Linear(ch * 7 * 7, 1)]
    return G, D


# the samples per sampler of each preset's end-of-training choice between its EMA and its raw G (select_samples):
# a 2-D mixture's 8x the protocol's 2,500, so that two samplers ~0.5 points of high quality apart are told
# apart (the estimate's std: 0.4 points at 2,500, 0.14 here); MNIST's and stacked MNIST's are what `minigan
# eval` scores (stacked MNIST: the KL estimate's std ~0.001 at 26,000; in sessions 34-37's 16 evaluations
# the raw G was ahead of its EMA in 7, by 0.001-0.008, behind in 9, by 0.003-0.083).  The choice costs what
# `minigan eval` does: on a 2-core CPU beside another run ~3 min for stacked MNIST (~1.5 % of the preset's 30k
# steps), ~50 s for MNIST (~1 % of dcgan-mnist's 16k)
MIXTURE_SELECT, MNIST_SELECT, STACKED_SELECT = 20_000, 5_000, 26_000

PRESETS = {
    # ring8's recipe: the search on unseen seeds is in benchmarks/quality.md (Adam's beta2 0.9 instead
    # of 0.999 ended the collapses; 16k steps let the slow seeds reach ~96 %; the learning rate
    # decaying to a quarter over the 16k steps (0.999913^16000 = 0.25) lifts them to ~97 %;
    # a light WGAN-GP on the hinge critic (lambda 0.1, lazily) gives D a slope between the modes, where
    # G's bridges sit: 97.8 +- 0.5 % over 10 seeds, the worst 97.4 instead of 95.8; 20k steps (the same
    # decay to a quarter: 0.9999307^20000 = 0.25), paid for by applying the penalty every 8th D step
    # instead of every 4th, thin the bridges further: 98.2 +- 0.2 %, worst 97.9.  The EMA's warm-up,
    # min(0.9995, (1 + t) / (10 + t)), lets 0.9995 bind only from step 17,990; other averages score the same.
    # The 1.5-2 % of samples still lost lie on G's bridges between modes, where ||dG/dz||_F is ~55-90
    # against below 0.05 on the modes: Jacobian truncation (gan.truncation) redraws the steepest 5 % of the
    # noise, 98.0 -> 99.98 % on 22 trained runs, 6 x 2,500 samples each.  With it the last 4k steps buy
    # nothing (16k steps: 100.0 % on 10 seeds, as 20k), so the run is back to 16k steps, decaying to a
    # quarter (0.999913^16000 = 0.25), with the penalty every 8th D step: 20 % less time than 20k.
    # 12k steps, decaying to a quarter over them (0.9998844821^12000 = 0.25; session 24): 100.0 +- 0.0 % on
    # 10 seeds truncated (worst 99.9), 97.3 +- 0.4 untruncated (16k: 98.1), and 25 % less time: the job took
    # 142 s at 16k on a 2-core machine without AVX-512, past the 2 minutes).  10k steps, decaying to a
    # quarter over them (0.9998613802^10000 = 0.25; session 27): 100.0 +- 0.0 % on 10 seeds truncated (worst
    # 99.9), 97.1 +- 0.5 untruncated (12k: 97.3), and 17 % less time: that machine ran a step in 8-10.5 ms as
    # its load varied, so the 12k job took 104-126 s (~135 s at 10.5 ms); 10k took 88 s).  Truncation 0.1 since
    # session 28: a slow seed (3004 of ten unseen ones) ended the 10k steps with 5.5 % of its samples on bridges,
    # more than the 5 % redrawn, and scored 98.9 % (99.98 at 0.08 and 0.1); over 30 runs of the 10k recipe
    # (4 x 2,500 samples each) the worst is 98.99 / 99.93 / 99.96 % at q = 0.05 / 0.08 / 0.1, the reverse KL
    # <= 0.004 / 0.004 / 0.005; the margin covers a seed with nearly twice 3004's bridges (training is unchanged)
    "ring8": Preset(_mixture_nets, dict(
        data="ring8", z_dim=16, width=128, steps=10000, batch_size=256, lr_g=1e-3, lr_d=1e-3, objective="hinge",
        lr_schedule="exponential", lr_gamma=0.9998613802, penalty="wgan_gp", penalty_weight=0.1, penalty_every=8,
        truncate=0.1, betas_g=[0.5, 0.9], betas_d=[0.5, 0.9], ema=0.9995, eval_every=1000, eval_samples=2500,
        select_samples=MIXTURE_SELECT, sample_every=2000, checkpoint_every=2000),
        "8 Gaussians on the unit circle (std 0.01), MLP G and D"),
    # grid25's: ring8's recipe (betas (0.5, 0.9), EMA 0.9995, lr 1e-3 decaying to a quarter) with 128 wide
    # nets; the 256 wide nets of session 5 took 20k steps to find the modes and reached ~88 % high quality
    # (benchmarks/quality.md); Jacobian truncation as ring8's (96.8 -> 99.8 % on 10 runs).  Without a
    # penalty, 40k steps left one of ten unseen seeds (5005, session 29) with 24 of 25 modes and another
    # (5007) found its 25th only at 28k: the hinge loss stops shaping D at a real point once D(x) >= 1, so
    # nothing gives G a slope toward an empty mode.  ring8's light WGAN-GP (lambda 0.1, every 8th D step)
    # asks for that slope: all 25 modes by 8k on those ten seeds (40k steps: 10 of 10, 99.9 +- 0.1 %), so
    # the run is 30k steps, decaying to a quarter over them (0.9999537913^30000 = 0.25; session 30): 10 of 10
    # there, 99.9 +- 0.1 % (96.6 +- 0.4 untruncated), all 25 modes by 10k, 239-265 s a run (2 cores, AVX2);
    # 30k without the penalty had left seed 0 with 22 of 25 modes (two BLAS threads, session 24).  Truncation
    # 0.1 since session 31, as ring8's: a slow seed leaves bridges past the 5 % that 0.05 redraws (7004: 92.6 %
    # untruncated, 96.8 at 0.05, 98.6 at 0.1; 20 runs' worst evaluation 96.4 -> 98.2 %, largest KL 0.018 ->
    # 0.017; 0.15 raised that seed's KL to 0.039, past the bar of 0.03)
    "grid25": Preset(_mixture_nets, dict(
        data="grid25", z_dim=16, width=128, steps=30000, batch_size=256, lr_g=1e-3, lr_d=1e-3, objective="hinge",
        lr_schedule="exponential", lr_gamma=0.9999537913, penalty="wgan_gp", penalty_weight=0.1, penalty_every=8,
        truncate=0.1, betas_g=[0.5, 0.9], betas_d=[0.5, 0.9], ema=0.9995, eval_every=5000, eval_samples=2500,
        select_samples=MIXTURE_SELECT, sample_every=10000, checkpoint_every=5000),
        "25 Gaussians on a 5x5 grid (std 0.05), MLP G and D"),
    # mlp-mnist's: hinge loss, dropout 0.3 in D and an EMA of G (0.999) halve the FID of the plain
    # non-saturating recipe (3 seeds: 80.6 against 167.5, classifier features); BatchNorm in G (g_norm)
    # halves it again at 10k steps (seed 0: 46.7 against 85.9); with the EMA's own BatchNorm statistics
    # (ema_bn_batches) 20k steps reach 10.6, 25k 9.3, 30k 8.5 (1.8x the floor; benchmarks/quality.md;
    # R1, Adam betas (0.5, 0.9), packing and a decaying lr lost).  On five eval draws (session 43) 30k is 2.44x
    # the mean floor (seed 0); 50k steps with a longer EMA (0.9998: a ~5k-step horizon, binding from ~45k under
    # the warm-up) end at 1.90x there (0.999 at 50k: 2.11x; session 44, its section for the other seeds)
    "mlp-mnist": Preset(_mlp_mnist, dict(data="mnist", z_dim=100, steps=50000, batch_size=128, objective="hinge",
                                         d_dropout=0.3, ema=0.9998, g_norm="batch", select_samples=MNIST_SELECT),
                        "MLP GAN on MNIST (z=100; G: BatchNorm and ReLU, tanh output; D: LeakyReLU, dropout; "
                        "hinge loss, EMA of G)"),
    # dcgan-mnist's: no BatchNorm in D (d_norm): its critic then judges each sample alone, not a batch of
    # reals or fakes normalised by its own statistics (seed 0 at 5k: FID 56.6 against 73.7 with it; session 13).
    # The learning rate doubled for both nets (4e-4; DCGAN's 2e-4 until session 17): ~1.4-1.7x fewer steps to the
    # same FID from 2k to 9k, the same FID at 16k (session 18).  A lazy R1 penalty on D (gamma 0.1, every 4th D
    # step; session 20): seed 0 at 16k 16.1 against 20.3 without it; on an H100 16.9 / 19.5 / 16.7 at 11.5k,
    # seeds 0-2 (session 25).  In the plateau near 13 (26k-32k) top-k G updates, DiffAugment and a fresh critic
    # of depth 3 or 2 did not lower it (sessions 22-23).  Every trajectory is in benchmarks/quality.md.
    "dcgan-mnist": Preset(_dcgan_mnist, dict(data="mnist", z_dim=100, steps=16000, batch_size=128, init="dcgan",
                                             ema=0.999, d_norm="none", d_channels=64, d_depth=2, lr_g=4e-4, lr_d=4e-4,
                                             penalty="r1", penalty_weight=0.1, penalty_every=4,
                                             select_samples=MNIST_SELECT),
                          "DCGAN on 28x28 MNIST"),
    # resnet-mnist's: dcgan-mnist's rate and penalty (4e-4 for both nets, a lazy R1 on D: gamma 0.1, every 4th
    # D step; session 35): seed 0's EMA scores FID 175 / 83 / 48.5 / 35.2 / 27.6 at 1k-5k steps against
    # 242 / 183 / 124 / 86 / 69 for the plain recipe (2e-4, no penalty) run beside it, which session 15's run
    # matched (229 / 168 / 124 / 80 / 62): 5.8x the floor at 5k instead of 13-15x, digit KL 0.017 (0.024).
    # Seeds 1 and 2 at 5k: 31.2 and 31.6 (6.4 +- 0.5x over three seeds; session 36).
    # Apart (session 36, seed 0, 4k): the rate alone 38.7, with R1 35.2 (seed 1: 39.9): the rate is most of the gain.
    # Seed 0 resumed past the default: 22.0 / 18.2 / 15.5 at 6k / 7k / 8k (3.3x), still -15 % a 1k (session 38).
    # Seed 1 from scratch (session 40): FID 29.9 at 5k, 9.9 at 15k (2.1x the floor, digit KL 0.008; its trajectory,
    # and 2.0x at 17k, in benchmarks/quality.md): 15k steps since session 40 (5k before), ~1.9 h alone on a 2-core
    # AVX-512 CPU (0.45 s a step, two BLAS threads).  Seed 2 from scratch (session 41): 36.8 at 5k, 10.1 at 15k (2.14x).
    # Seed 0 from scratch (session 42): 30.9 at 5k, 12.3 at 15k (2.61x; digit KL 0.015, over the goal), 13.6 at 17k.
    # Each of those is one eval draw (seed 0: a high floor, 4.72); on eval seeds 0-4 the 15k runs average FID
    # 13.5 (seed 0) and 12.3 (seed 2) against a floor of 3.65, 3.7x and 3.4x, flat from 11k / 13k on (session 43).
    "resnet-mnist": Preset(_resnet_mnist, dict(data="mnist", z_dim=128, steps=15000, batch_size=64, ema=0.999,
                                               lr_g=4e-4, lr_d=4e-4, penalty="r1", penalty_weight=0.1,
                                               penalty_every=4, select_samples=MNIST_SELECT),
                           "ResNet GAN on MNIST: residual up-blocks in G, down-blocks in D"),
    # dcgan-stacked's critic keeps its BatchNorm: without it seed 0 found 977 of 1,000 modes, KL 0.450, against
    # 1,000 and 0.162 (a critic that sees each batch's own statistics keeps G's 1,000 modes even; session 13).
    # Packing (pack=2, PacDCGAN2) did not help at 5k (KL 0.176, unpacked 0.152): steps are what lowered the KL
    # (session 21).  dcgan-mnist's rate (4e-4 for both nets; session 34): ~1.7x fewer steps than DCGAN's 2e-4 to the
    # same KL, 1,000 modes throughout.  dcgan-mnist's lazy R1 (gamma 0.1, every 4th D step; session 36): ~1.5x fewer
    # steps at 10k (seed 0: KL 0.064 against 0.075 without it).  30k steps since session 37 (5k before: KL 0.09-0.11
    # there), where the KL still fell 5-16 % a 5k steps at 20k-25k: seeds 0 / 1 / 2 end at KL 0.046 / 0.046 / 0.051
    # (the last 0.050 +- 0.002 over five eval noise seeds), 1,000 modes (sessions 37-39; every seed's trajectory is
    # in benchmarks/quality.md).  ~1.8 h alone on a 2-core AVX-512 CPU (0.18 s a step, two BLAS threads; session 39).
    "dcgan-stacked": Preset(lambda r: _dcgan_mnist(r, channels=3), dict(
        data="stacked-mnist", z_dim=100, steps=30000, batch_size=64, init="dcgan", ema=0.999, d_norm="batch",
        d_channels=64, d_depth=2, lr_g=4e-4, lr_d=4e-4, penalty="r1", penalty_weight=0.1, penalty_every=4,
        select_samples=STACKED_SELECT),
        "DCGAN on stacked MNIST: three digits as RGB channels, 1000 modes"),
    "cgan-mnist": Preset(_mlp_mnist, dict(data="mnist", z_dim=100, steps=10000, batch_size=128, conditional=True),
                         "conditional MLP GAN on MNIST: one-hot digit joined to z and to D's input"),
}


def recipe_for(name, **overrides):
    """The full recipe of preset ``name`` with ``overrides`` applied (unknown keys are an error)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    check_keys(overrides)
    sized = {key: [n for n, p in PRESETS.items() if p.recipe.get(key, 0) > 0] for key in SIZED}  # (presets it sizes)
    recipe = check_recipe({**DEFAULT_RECIPE, **PRESETS[name].recipe, **overrides},
                          at_least={key: (1, f" for preset {name!r} ({what})") for key, what in SIZED.items()
                                    if name in sized[key]})
    for key, what in SIZED.items():
        presets = sized[key]
        if name not in presets and recipe[key]:
            raise ValueError(f"{key} sets {what} of {' and '.join(presets)}; preset {name!r} has a fixed "
                             f"architecture (expected {key} 0, got {recipe[key]!r})")
    for key, (kind, net, presets) in NORMED.items():
        if recipe[key] != "none" and name not in presets:
            raise ValueError(f"{key} sets the normalisation of the {kind} presets' {net} ({', '.join(presets)}); "
                             f"preset {name!r} has a fixed {net} (expected {key} 'none', got {recipe[key]!r})")
    return recipe


def check_keys(overrides):
    """Every key of ``overrides`` must be a recipe key (a misspelt one would be silently ignored)."""
    unknown = set(overrides) - set(DEFAULT_RECIPE)
    if unknown:
        raise KeyError(f"unknown recipe keys {sorted(unknown)}; known: {', '.join(DEFAULT_RECIPE)}")


def check_recipe(recipe, at_least=None):
    """Validate the values of a full recipe (clear errors naming the key); -> the recipe.  ``at_least``:
    {key: (bound, why)} raising an integer key's lower bound for one preset (why ends its error's first part)."""
    at_least = at_least or {}
    for key, low in (("batch_size", 1), ("steps", 1), ("n_critic", 1), ("pack", 1), ("z_dim", 1), ("width", 0),
                     ("d_channels", 0), ("d_depth", 0), ("sample_every", 0), ("checkpoint_every", 0),
                     ("ema_bn_batches", 0), ("eval_samples", 1), ("select_samples", 0)):       # (0: never)
        low, why = at_least.get(key, (low, ""))
        v = recipe[key]
        if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= low):
            raise ValueError(f"{key} must be an int >= {low}{why}, got {v!r}")
    for key in ("lr_g", "lr_d", "grad_clip", "weight_clip", "l1", "l2", "ema", "d_dropout", "eval_every"):
        if not (isinstance(recipe[key], (int, float, np.number)) and recipe[key] >= 0):
            raise ValueError(f"{key} must be a number >= 0, got {recipe[key]!r}")
    if not (isinstance(recipe["topk"], (int, float, np.number)) and not isinstance(recipe["topk"], bool)
            and 0 < recipe["topk"] <= 1):
        raise ValueError(f"topk must be a fraction in (0, 1] (1: G learns from every fake), got {recipe['topk']!r}")
    if parse_augment(recipe["augment"]) and recipe["data"] in MIXTURES:
        raise ValueError(f"augment transforms images; data {recipe['data']!r} are 2-D points (expected augment "
                         f"'none', got {recipe['augment']!r})")
    if recipe["ema"] >= 1:
        raise ValueError(f"ema must be a decay in [0, 1), got {recipe['ema']!r}")
    check_truncate(recipe["truncate"])
    for key in NORMED:                            # (g_norm, d_norm)
        if recipe[key] not in NORMS:
            raise ValueError(f"unknown {key} {recipe[key]!r}; expected one of {', '.join(NORMS)}")
    if recipe["pack"] < 1 or recipe["batch_size"] % recipe["pack"]:
        raise ValueError(f"pack must be >= 1 and divide batch_size, got pack={recipe['pack']}, "
                         f"batch_size={recipe['batch_size']}")
    if recipe["penalty"] not in PENALTIES:
        raise ValueError(f"unknown penalty {recipe['penalty']!r}; expected one of {', '.join(PENALTIES)}")
    if not (isinstance(recipe["penalty_every"], int) and recipe["penalty_every"] >= 1):
        raise ValueError(f"penalty_every must be an int >= 1, got {recipe['penalty_every']!r}")
    if not recipe["penalty_weight"] >= 0:
        raise ValueError(f"penalty_weight must be >= 0, got {recipe['penalty_weight']!r}")
    if recipe["pack"] > 1 and recipe["conditional"]:
        raise ValueError("packing (pack > 1) is not supported for conditional presets")
    return recipe


PENALTIES = ("none", "r1", "r2", "wgan_gp")
NORMS = ("none", "batch")            # the values of g_norm and d_norm
DCGAN_PRESETS = ("dcgan-mnist", "dcgan-stacked")
# the presets whose net each key normalises (the others' is fixed): key -> (what they are, which net, presets)
NORMED = {"g_norm": ("MLP MNIST", "G", ("mlp-mnist", "cgan-mnist")), "d_norm": ("DCGAN", "D", DCGAN_PRESETS)}
# the size keys: key -> what they set, in the presets whose recipe sets them (> 0; 0 in the others')
SIZED = {"width": "the hidden width of the MLPs", "d_channels": "the channels of D's convs: c, then 2c, 4c ...",
         "d_depth": "the number of D's stride-2 convs"}
# the width of the presets' MLPs before `width` was a recipe key: what their runs saved without it were built with
LEGACY_WIDTH = {"ring8": 128, "grid25": 256}


def legacy_recipe(preset):
    """What a run of ``preset`` saved before a key existed did, for the keys where that is not the key's
    default of today (every other missing key takes DEFAULT_RECIPE's value)."""
    dcgan = preset in DCGAN_PRESETS
    return {"width": LEGACY_WIDTH.get(preset, 0), "ema_bn_batches": 0, "d_norm": "batch" if dcgan else "none",
            "d_channels": 64 if dcgan else 0, "d_depth": 2 if dcgan else 0,
            "select_samples": MIXTURE_SELECT if preset in MIXTURES else 0}       # (the 2-D mixtures chose)


def spectral_normed(layers):
    """The layers with every Linear / Conv2d / ConvTranspose2d wrapped in SpectralNorm (also inside
    Residual blocks)."""
    out = []
    for layer in layers:
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            layer = nn.SpectralNorm(layer)
        elif isinstance(layer, nn.Residual):
            parts = [None if p is None else nn.Sequential(*spectral_normed(p.layers if isinstance(p, nn.Sequential) else [p]),
                                                          _init=False) for p in (layer.body, layer.shortcut)]
            layer = nn.Residual(*parts)
        out.append(layer)
    return out


def build_nets(name, recipe=None, seed=0):
    """(G, D) Sequentials of preset ``name``, initialised reproducibly from ``seed``."""
    recipe = recipe_for(name) if recipe is None else recipe
    g_layers, d_layers = PRESETS[name].build(recipe)
    if recipe["spectral_norm"]:
        d_layers = spectral_normed(d_layers)
    g_seed, d_seed = np.random.SeedSequence(seed).generate_state(2)
    dtype = np.dtype(recipe["dtype"])
    G = nn.Sequential(*g_layers, dtype=dtype, seed=int(g_seed), init=recipe["init"])
    D = nn.Sequential(*d_layers, dtype=dtype, seed=int(d_seed), init=recipe["init"])
    return G, D
