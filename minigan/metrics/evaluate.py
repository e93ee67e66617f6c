"""Evaluate a training run: mode coverage for 2-D mixtures, classifier-feature metrics for MNIST,
modes out of 1000 for stacked MNIST.  Each metric comes with its real-vs-real floor where one exists
(two disjoint halves of the real data), so that a number can be read against what is attainable."""
import numpy as np

from ..data import stacked_mnist
from .classifier import MnistClassifier, softmax
from .features import fid, inception_score, kl_to_uniform, precision_recall
from .mixtures import mode_coverage

MIXTURE_SAMPLES = 2500          # the PacGAN protocol
STACKED_SAMPLES = 26000         # the VEEGAN / PacGAN stacked-MNIST protocol


def _custom_metrics(trainer, features, n, seed, rng):
    if features is None:
        raise ValueError("evaluate: a GAN of your own nets needs features=callable(x) -> (N, F) array to be scored")
    seeds = rng.integers(2**63, size=2)
    real_a, real_b = (trainer.real_samples(n, seed=int(s)) for s in seeds)
    fa, fb, ff = (np.asarray(features(x), dtype=np.float64) for x in (real_a, real_b, trainer.sample(n, seed=seed)))

    def scores(real, fake):
        precision, recall = precision_recall(real, fake, k=3)
        return {"fid": fid(real, fake), "precision": precision, "recall": recall}
    return {"preset": "custom", "step": trainer.step, "n": n, **scores(fa, ff), "floor": scores(fa, fb)}


def _feature_metrics(real, fake):
    """real, fake: (features, logits) pairs from MnistClassifier.features_and_logits."""
    (fr, _), (ff, logits) = real, fake
    precision, recall = precision_recall(fr, ff, k=3)
    return {"fid": fid(fr, ff), "inception_score": inception_score(softmax(logits)),
            "precision": precision, "recall": recall, "digit_kl": kl_to_uniform(logits.argmax(axis=1), 10)}


def evaluate(trainer, n=None, seed=0, classifier=None, features=None):
    """-> a flat dict of metrics for the run held by ``trainer`` (its EMA generator if it has one).
    A GAN of your own nets is scored on your ``features(x) -> (N, F)`` (a host numpy array): the
    Fréchet distance and precision/recall (k = 3) of n generated against n real samples, each beside
    its real-vs-real floor."""
    rng = np.random.default_rng(seed)
    if trainer.preset == "custom":
        return _custom_metrics(trainer, features, n or 1000, seed, rng)
    if trainer.mixture is not None:
        n = n or MIXTURE_SAMPLES

        def coverage(ema):
            m = mode_coverage(trainer.sample(n, seed=seed, ema=ema), trainer.mixture.centers, trainer.mixture.std)
            return {"modes": m["modes"], "hq_fraction": m["hq_fraction"], "reverse_kl": m["reverse_kl"]}
        c = coverage(True)
        out = {"preset": trainer.preset, "step": trainer.step, "n": n, "modes": c["modes"],
               "n_modes": len(trainer.mixture.centers), "hq_fraction": c["hq_fraction"], "reverse_kl": c["reverse_kl"]}
        if trainer.ema is not None:                     # the raw G beside its EMA: choose the sampler by measurement
            out["raw_g"] = coverage(False)
        return out
    clf = classifier or MnistClassifier()
    if trainer.recipe["data"] == "stacked-mnist":
        n = n or STACKED_SAMPLES
        fake = trainer.sample(n, seed=seed)                                     # (n, 3, 28, 28)
        digits = [clf.predict(fake[:, c:c + 1]) for c in range(3)]
        modes = 100 * digits[0] + 10 * digits[1] + digits[2]
        real, real_modes = stacked_mnist(trainer.host_images, trainer.host_labels, n, rng)
        out = {"preset": trainer.preset, "step": trainer.step, "n": n,
               "modes": int(len(np.unique(modes))), "kl": kl_to_uniform(modes, 1000),
               "floor": {"modes": int(len(np.unique(real_modes))), "kl": kl_to_uniform(real_modes, 1000)}}
        return out
    images = trainer.host_images
    n = min(n or 5000, len(images) // 2)
    fake = trainer.sample(n, seed=seed)
    order = rng.permutation(len(images))
    real_a = images[order[:n]].astype(np.float32)[:, None] / 127.5 - 1
    real_b = images[order[n:2 * n]].astype(np.float32)[:, None] / 127.5 - 1
    a, b, f = (clf.features_and_logits(x) for x in (real_a, real_b, fake))   # one classifier pass per set
    return {"preset": trainer.preset, "step": trainer.step, "n": n, **_feature_metrics(a, f),
            "floor": _feature_metrics(a, b)}
