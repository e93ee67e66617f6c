"""Feature-space sample-quality metrics, numpy only.

- Fréchet distance (FID; Heusel et al. 2017) between Gaussians fitted to two feature sets:
  |mu1 - mu2|^2 + Tr S1 + Tr S2 - 2 Tr (S1^1/2 S2 S1^1/2)^1/2   (the symmetric form of
  Tr sqrt(S1 S2), evaluated with two symmetric eigendecompositions, never a complex sqrtm).
- Inception-Score analogue (Salimans et al. 2016): exp( E_x KL(p(y|x) || p(y)) ).
- Improved precision / recall (Kynkäänniemi et al. 2019): a sample is inside a set's manifold if
  it lies within the k-th-nearest-neighbour radius of some member; precision = fraction of fakes
  inside the real manifold, recall = fraction of reals inside the fake manifold.
- KL of a class histogram to uniform: sum_c p_c log(C p_c).
"""
import numpy as np


def gaussian_stats(features):
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need (N >= 2, D) features, got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrt_psd(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, s1, mu2, s2):
    """FID between N(mu1, s1) and N(mu2, s2); exactly 0 for identical statistics (up to round-off)."""
    a = _sqrt_psd(s1)
    m = a @ s2 @ a
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    d = mu1 - mu2
    return float(max(d @ d + np.trace(s1) + np.trace(s2) - 2 * tr_covmean, 0.0))


def fid(features_a, features_b):
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def inception_score(probs, eps=1e-12):
    p = np.asarray(probs, dtype=np.float64)
    py = p.mean(axis=0, keepdims=True)
    kl = (p * (np.log(p + eps) - np.log(py + eps))).sum(axis=1)
    return float(np.exp(kl.mean()))


def _sq_dists(a, b, chunk=2048):
    """Squared Euclidean distances (len(a), len(b)) through GEMMs, in row chunks."""
    bb = (b * b).sum(axis=1)
    out = np.empty((len(a), len(b)))
    for i in range(0, len(a), chunk):
        x = a[i:i + chunk]
        out[i:i + chunk] = np.maximum((x * x).sum(axis=1)[:, None] + bb[None, :] - 2 * x @ b.T, 0)
    return out


def _kth_radius(x, k):
    d = _sq_dists(x, x)
    return np.partition(d, k, axis=1)[:, k]         # index 0 is the point itself (distance 0)


def precision_recall(real, fake, k=3):
    """-> (precision, recall) with k-nearest-neighbour manifolds (k = 3 as in the paper)."""
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
    r_real, r_fake = _kth_radius(real, k), _kth_radius(fake, k)
    d = _sq_dists(fake, real)                                   # (F, R)
    precision = float((d <= r_real[None, :]).any(axis=1).mean())
    recall = float((d.T <= r_fake[None, :]).any(axis=1).mean())
    return precision, recall


def kl_to_uniform(labels, n_classes):
    """KL(p || uniform) of the histogram of ``labels`` over ``n_classes`` classes."""
    p = np.bincount(np.asarray(labels), minlength=n_classes) / max(len(labels), 1)
    nz = p > 0
    return float((p[nz] * np.log(n_classes * p[nz])).sum())
