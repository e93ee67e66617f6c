"""A yardstick for the MNIST rows of quality.md: the score, on minigan's metric, of a DCGAN generator that
someone else trained with PyTorch (../shared/data/torch-dcgan-mnist, see its README).

    python benchmarks/reference_fid.py [--n 5000] [--seeds 1 2 3]
                                      [--runs RUN_DIR ...]

The generator is rebuilt from its state dict (``torch_generator_net``, the net tests/test_torch_dcgan.py
proves against PyTorch's outputs to 1e-10 in float64), sampled in eval mode (its BatchNorm running
statistics, as PyTorch's eval()) from z ~ N(0, 1) of shape (64, 1, 1), and scored by
``metrics.score_mnist_samples``: the same real images, classifier features, floor and sample count as
``minigan eval`` gives a run.  ``--runs`` scores minigan runs beside it (their chosen sampler, the same
noise seeds), so the two sit in one table measured by one code path.
"""
import argparse
import os
from pathlib import Path

import numpy as np

import minigan
from minigan import metrics
from minigan.data.mnist import load_mnist

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("MINIGAN_SHARED", HERE.parent.parent / "shared"))     # as the tests find it
WEIGHTS = SHARED / "data" / "torch-dcgan-mnist" / "generator.npz"


def torch_generator_net(dtype=np.float32):
    """The third party's generator as a flat Sequential (the layout of its README), unloaded; the net
    tests/test_torch_dcgan.py loads and proves against PyTorch's outputs."""
    CT, BN, R = minigan.ConvTranspose2d, minigan.BatchNorm2d, minigan.ReLU
    return minigan.Sequential(CT(64, 256, 3, stride=2), BN(256), R(), CT(256, 128, 4, stride=1), BN(128), R(),
                              CT(128, 64, 3, stride=2), BN(64), R(), CT(64, 1, 4, stride=2), minigan.Tanh(),
                              dtype=dtype, seed=0)


def torch_generator(path=WEIGHTS):
    """-> (G with the third party's weights, float32, its z shape per sample)."""
    G = torch_generator_net(np.float32)
    data = minigan.load(path)
    G.load_state_dict({k: v for k, v in data.items() if k[0].isdigit()})
    return G, data["z"].shape[1:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="generated and real images each (minigan eval's 5,000)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="noise seeds for the generators")
    ap.add_argument("--weights", default=str(WEIGHTS))
    ap.add_argument("--data-dir", default=os.environ.get("MINIGAN_DATA", SHARED / "data" / "mnist"))
    ap.add_argument("--runs", nargs="*", default=[], help="minigan run folders to score beside it")
    args = ap.parse_args(argv)
    images = load_mnist(args.data_dir)[0]
    clf = metrics.MnistClassifier()
    G, zshape = torch_generator(args.weights)
    samplers = {"torch DCGAN (third party)": lambda n, s: np.concatenate(
        [G(z) for z in np.array_split(np.random.default_rng(s).standard_normal((n, *zshape)).astype(np.float32),
                                      max(1, n // 500))])}
    for run in args.runs:
        from minigan.gan.trainer import Trainer
        t = Trainer.resume(run)
        samplers[f"{run} (step {t.step}, {t.sampler})"] = lambda n, s, t=t: t.sample(n, seed=s, ema=t.sampler == "ema")
    print(f"{len(images)} real MNIST images; n = {args.n}; noise seeds {args.seeds}\n")
    print("| generator | noise seed | FID | floor | FID / floor | digit KL | inception score | precision | recall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, sample in samplers.items():
        for s in args.seeds:
            r = metrics.score_mnist_samples(sample(args.n, s), images, n=args.n, classifier=clf)
            print(f"| {name} | {s} | {r['fid']:.2f} | {r['floor']['fid']:.2f} | {r['fid'] / r['floor']['fid']:.1f} | "
                  f"{r['digit_kl']:.4f} | {r['inception_score']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
