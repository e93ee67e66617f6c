"""Evaluate a training run: mode coverage for 2-D mixtures, classifier-feature metrics for MNIST,
modes out of 1000 for stacked MNIST.  Each metric comes with its real-vs-real floor where one exists
(two disjoint halves of the real data), so that a number can be read against what is attainable."""
import hashlib
import math
from collections import OrderedDict

import numpy as np

from ..backend import to_backend
from ..data import stacked_mnist
from .classifier import MnistClassifier, softmax
from .features import fid, inception_score, kl_to_uniform, precision_recall
from .mixtures import mode_coverage

MIXTURE_SAMPLES = 2500          # the PacGAN protocol
STACKED_SAMPLES = 26000         # the VEEGAN / PacGAN stacked-MNIST protocol
MNIST_SAMPLES = 5000            # generated and real images each (the floor's two real halves: 2 x 5,000)


def _custom_metrics(trainer, features, n, seed, rng):
    if features is None:
        raise ValueError("evaluate: a GAN of your own nets needs features=callable(x) -> (N, F) array to be scored")
    seeds = rng.integers(2**63, size=2)
    real_a, real_b = (trainer.real_samples(n, seed=int(s)) for s in seeds)
    fa, fb = (np.asarray(features(x), dtype=np.float64) for x in (real_a, real_b))

    def scores(real, fake):
        precision, recall = precision_recall(real, fake, k=3)
        return {"fid": fid(real, fake), "precision": precision, "recall": recall}

    def generated(truncate=None):
        return scores(fa, np.asarray(features(trainer.sample(n, seed=seed, truncate=truncate)), dtype=np.float64))
    out = {"preset": "custom", "step": trainer.step, "n": n, **generated(), "floor": scores(fa, fb)}
    return _untruncated(trainer, out, lambda sampler: generated(0))


def _feature_metrics(real, fake):
    """real, fake: (features, logits) pairs from MnistClassifier.features_and_logits."""
    (fr, _), (ff, logits) = real, fake
    precision, recall = precision_recall(fr, ff, k=3)
    return {"fid": fid(fr, ff), "inception_score": inception_score(softmax(logits)),
            "precision": precision, "recall": recall, "digit_kl": kl_to_uniform(logits.argmax(axis=1), 10)}


def _real_halves(images, n, rng, clf):
    """Two disjoint sets of n real images (uint8 (N, 28, 28)) drawn by ``rng``, through the classifier:
    the reference set, and the other half of the real-vs-real floor."""
    order = rng.permutation(len(images))
    halves = (images[order[i * n:(i + 1) * n]].astype(np.float32)[:, None] / 127.5 - 1 for i in (0, 1))
    return tuple(clf.features_and_logits(x) for x in halves)                # one classifier pass per set


_REFERENCES = OrderedDict()     # the last few real references, keyed by what determines them (_real_reference)
REFERENCES_KEPT = 4             # ~5.5 MB each at n = 5,000


def _digest(*arrays):
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(to_backend(a, "numpy"))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def _real_reference(images, n, seed, clf):
    """-> (a, floor): the reference half a of _real_halves(images, n, default_rng(seed), clf) and the
    floor's metrics (_feature_metrics(a, b) with the other half b, which is then not needed).  They depend
    only on the images' bytes, n, seed and the classifier's weights (and its batch and backend), so the last
    REFERENCES_KEPT are kept, keyed by exactly these (the bytes by a digest): a run scored every 1,000 steps,
    or many generators scored against one set, pass the real images through the classifier once.  a's
    arrays are read-only and the floor a copy."""
    weights = sorted({**clf.net.parameters(), **clf.net.buffers()}.items())
    key = (_digest(images), int(n), int(seed), tuple(k for k, _ in weights), _digest(*(v for _, v in weights)),
           clf.batch, clf.backend)
    if key in _REFERENCES:
        _REFERENCES.move_to_end(key)
    else:
        a, b = _real_halves(images, n, np.random.default_rng(seed), clf)
        for arr in a:
            arr.setflags(write=False)
        _REFERENCES[key] = (a, _feature_metrics(a, b))
        while len(_REFERENCES) > REFERENCES_KEPT:
            _REFERENCES.popitem(last=False)
    a, floor = _REFERENCES[key]
    return a, dict(floor)


def score_mnist_samples(samples, images, n=MNIST_SAMPLES, seed=0, classifier=None):
    """-> the MNIST metrics of any generator's ``samples`` ((N, 1, 28, 28) in [-1, 1], N >= n, numpy or
    CuPy; its first n are scored) against n real ``images`` (uint8 (M, 28, 28), M >= 2n), with the real-vs-real
    floor beside them: the numbers ``evaluate`` gives a minigan run with the same images, n and seed
    (the same real images are drawn), so a generator trained elsewhere can be read against a run's."""
    images, samples = np.asarray(to_backend(images, "numpy")), to_backend(samples, "numpy")   # CuPy to the host
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"score_mnist_samples: images must be uint8 MNIST digits (M, 28, 28), as load_mnist "
                         f"returns; got {images.dtype} {images.shape}")
    if not isinstance(n, (int, np.integer)) or n < 2 or 2 * n > len(images):
        raise ValueError(f"score_mnist_samples: n must be an int >= 2 with 2n <= {len(images)} real images "
                         f"(the reference set and the floor's other half), got {n!r}")
    if len(samples) < n:
        raise ValueError(f"score_mnist_samples: {len(samples)} samples given, {n} needed (n={n})")
    n, clf = int(n), classifier or MnistClassifier()
    a, floor = _real_reference(images, n, seed, clf)
    return {"n": n, **_feature_metrics(a, clf.features_and_logits(samples[:n])), "floor": floor}


def _samplers(trainer):
    """The samplers a run can draw from: the EMA of G and the raw G, or the raw G alone."""
    return ("ema", "raw") if trainer.ema is not None else ("raw",)


def _headline(trainer, scores, common):
    """``common`` + the metrics of the sampler the run uses, with every sampler's beside them
    (``ema_g``, ``raw_g``) when it has two: the choice is made by measurement (better_sampler)."""
    out = {"preset": trainer.preset, "step": trainer.step, **common, "sampler": trainer.sampler,
           **scores[trainer.sampler]}
    if len(scores) > 1:
        out.update({f"{name}_g": m for name, m in scores.items()})
    return out


def _untruncated(trainer, out, score):
    """A run that samples with Jacobian truncation (recipe ``truncate`` > 0) also gets its sampler's
    metrics without it, on the same noise (``"untruncated"``): what the truncation adds stays visible."""
    if trainer.recipe.get("truncate", 0):
        out["truncate"] = trainer.recipe["truncate"]
        out["untruncated"] = score(trainer.sampler)
    return out


def evaluate(trainer, n=None, seed=0, classifier=None, features=None):
    """-> a flat dict of metrics for the run held by ``trainer``, of the sampler it uses
    (``"sampler"``: "ema" or "raw", Trainer.sampler); a run with an EMA also gets both samplers'
    metrics side by side (``"ema_g"``, ``"raw_g"``), on the same noise.  A run whose recipe samples
    with Jacobian truncation (``truncate`` > 0) is scored truncated, and its sampler untruncated is
    given beside (``"untruncated"``, with ``"truncate"``: the fraction rejected).
    A GAN of your own nets is scored on your ``features(x) -> (N, F)`` (a host numpy array): the
    Fréchet distance and precision/recall (k = 3) of n generated against n real samples, each beside
    its real-vs-real floor."""
    rng = np.random.default_rng(seed)
    if trainer.preset == "custom":
        return _custom_metrics(trainer, features, n or 1000, seed, rng)
    if trainer.mixture is not None:
        n = n or MIXTURE_SAMPLES

        def coverage(sampler, truncate=None):
            m = mode_coverage(trainer.sample(n, seed=seed, ema=sampler == "ema", truncate=truncate),
                              trainer.mixture.centers, trainer.mixture.std)
            return {"modes": m["modes"], "hq_fraction": m["hq_fraction"], "reverse_kl": m["reverse_kl"]}
        out = _headline(trainer, {s: coverage(s) for s in _samplers(trainer)},
                        {"n": n, "n_modes": len(trainer.mixture.centers)})
        return _untruncated(trainer, out, lambda sampler: coverage(sampler, 0))
    clf = classifier or MnistClassifier()
    if trainer.recipe["data"] == "stacked-mnist":
        n = n or STACKED_SAMPLES
        real, real_modes = stacked_mnist(trainer.host_images, trainer.host_labels, n, rng)

        def modes(sampler, truncate=None):
            fake = trainer.sample(n, seed=seed, ema=sampler == "ema", truncate=truncate)     # (n, 3, 28, 28)
            digits = [clf.predict(fake[:, c:c + 1]) for c in range(3)]
            found = 100 * digits[0] + 10 * digits[1] + digits[2]
            return {"modes": int(len(np.unique(found))), "kl": kl_to_uniform(found, 1000)}
        out = _headline(trainer, {s: modes(s) for s in _samplers(trainer)}, {
            "n": n, "floor": {"modes": int(len(np.unique(real_modes))), "kl": kl_to_uniform(real_modes, 1000)}})
        return _untruncated(trainer, out, lambda sampler: modes(sampler, 0))
    images = trainer.host_images
    n = min(n or MNIST_SAMPLES, len(images) // 2)
    a, floor = _real_reference(images, n, seed, clf)         # as _real_halves(images, n, rng, clf) would draw

    def features_of(sampler, truncate=None):
        fake = trainer.sample(n, seed=seed, ema=sampler == "ema", truncate=truncate)
        return _feature_metrics(a, clf.features_and_logits(fake))
    out = _headline(trainer, {s: features_of(s) for s in _samplers(trainer)}, {"n": n, "floor": floor})
    return _untruncated(trainer, out, lambda sampler: features_of(sampler, 0))


def sampler_score(metrics, n_modes):
    """A number to rank one sampler's metrics by (higher is better).  Mixtures: the high-quality
    fraction x exp(-reverse KL) x modes captured / n_modes (1 for a perfect sampler; a sampler whose
    samples left every mode scores 0); stacked MNIST: modes / n_modes x exp(-KL); MNIST: minus the
    Fréchet distance."""
    if "hq_fraction" in metrics:
        return metrics["hq_fraction"] * math.exp(-metrics["reverse_kl"]) * metrics["modes"] / n_modes
    if "kl" in metrics:
        return metrics["modes"] / n_modes * math.exp(-metrics["kl"])
    return -metrics["fid"]


def better_sampler(result):
    """"ema" or "raw": the better of the two samplers an evaluate() result measured side by side
    (ties go to the EMA); the run's own sampler when only one was measured."""
    if "ema_g" not in result:
        return result["sampler"]
    k = result.get("n_modes", 1000)
    return "raw" if sampler_score(result["raw_g"], k) > sampler_score(result["ema_g"], k) else "ema"


def summarize_draws(results):
    """-> {"mean": ..., "std": ...}: each numeric entry of K evaluate() results (K >= 1, the same run scored on
    K seeds: other noise and other real subsets) as its mean and sample standard deviation over the K draws,
        mean = (1/K) sum_k v_k,    std = sqrt( sum_k (v_k - mean)^2 / (K - 1) )   (0 when K = 1),
    nested as the results are (``mean["ema_g"]["fid"]``); an entry that is not a number in every draw (text, or
    missing from one) is left out, and a non-finite one (a reverse KL of inf) is averaged as it is: inf or nan.
    One draw's MNIST FID at 5,000 samples moves by 9-17 % with the seed and its real-vs-real floor by ~25 %, so
    means over draws are what to compare recipes by."""
    if not results:
        raise ValueError("summarize_draws: no results given (expected one evaluate() result per draw)")

    def walk(values):
        first = values[0]
        if isinstance(first, dict):
            keys = [k for k in first if all(isinstance(v, dict) and k in v for v in values)]
            pairs = {k: walk([v[k] for v in values]) for k in keys}
            pairs = {k: p for k, p in pairs.items() if p is not None}
            return ({k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}) if pairs else None
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            a = np.asarray(values, dtype=np.float64)
            with np.errstate(invalid="ignore"):
                return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0
        return None
    mean, std = walk(list(results)) or ({}, {})
    return {"mean": mean, "std": std}
