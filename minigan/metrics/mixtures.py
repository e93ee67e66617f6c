"""Mode coverage on 2-D Gaussian mixtures, the PacGAN / VEEGAN protocol (Lin et al. 2018, Sec. 5.1):
a sample is *high quality* if it lies within 3 standard deviations of its nearest mode; a mode is
*captured* if at least one high-quality sample is nearest to it; the reverse KL is
sum_k p_k log(K p_k) over the histogram p of high-quality samples among the K modes."""
import numpy as np


def mode_coverage(samples, centers, std, threshold=3.0):
    """-> {"modes": captured count, "hq_fraction": in [0, 1], "reverse_kl": float, "histogram": list}.

    samples (N, 2), centers (K, 2).  With no high-quality sample at all, reverse_kl is inf."""
    x = np.asarray(samples, dtype=np.float64)
    c = np.asarray(centers, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(f"samples must be (N, {c.shape[1]}), got {x.shape}")
    finite = np.isfinite(x).all(axis=1)
    d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)        # (N, K)
    nearest = d2.argmin(axis=1)
    hq = finite & (np.sqrt(d2[np.arange(len(x)), nearest]) < threshold * std)
    hist = np.bincount(nearest[hq], minlength=len(c)).astype(np.int64)
    k = len(c)
    if hq.sum() == 0:
        rkl = float("inf")
    else:
        p = hist / hist.sum()
        nz = p > 0
        rkl = float((p[nz] * np.log(k * p[nz])).sum())
    return {"modes": int((hist > 0).sum()), "hq_fraction": float(hq.mean()) if len(x) else 0.0,
            "reverse_kl": rkl, "histogram": hist.tolist()}
