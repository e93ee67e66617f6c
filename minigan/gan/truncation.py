"""Jacobian truncation: sampling that rejects the noise where G is steepest.

Tanielian, Issenhuth, Dohmatob & Mary, "Learning disconnected manifolds: a no GAN's land" (ICML 2020):
a continuous G cannot map the connected support of its Gaussian noise onto disjoint modes without
samples on the paths between them.  Those samples (the "bridges") come from the thin regions of z
space where G crosses from one mode to the next, which is where its Jacobian is largest.  So draw
z, and keep it only when

    ||J(z)||_F = ||dG/dz (z)||_F <= tau,    tau = the (1 - q) quantile of ||J||_F over calibration noise,

redrawing each rejected position until it is kept.  Every kept sample is an independent draw of
G(z) with z ~ N(0, I) conditioned on ||J(z)||_F <= tau: a fraction q of the noise is rejected (on
the calibration noise exactly, elsewhere in expectation).  The truncation trick of BigGAN trades
diversity for quality by shrinking z; this one removes only where G tears the noise apart.

    y, norms = jacobian_norms(G, z)              # exact: reverse or forward mode, whichever is fewer passes
    tau = truncation_threshold(norms_on_calibration_noise, q)
"""
import numpy as np

from ..backend import get_xp, is_cupy_array, to_backend


def jacobian_norms(net, z, n_inputs=None):
    """-> (y, norms): ``y = net(z)`` in eval mode (a backend array) and, for each sample, the exact
    Frobenius norm of the Jacobian of its output (m values) with respect to its first ``n_inputs``
    input columns (default: all; a conditional G leaves its one-hot label columns out), as a host
    float64 array of shape (N,).

    In eval mode each sample's output depends on its own input only (no batch statistics, no dropout),
    so one pass over the batch gives every sample's row of the Jacobian along one direction:

        ||J||_F^2 = sum_i ||J^T e_i||^2      m backward passes (dy = e_i: a row of J per pass)
                  = sum_j ||J e_j||^2        n forward-mode passes (x_dot = e_j: a column per pass)

    and the cheaper of the two is taken (a 2-D mixture's G: 2 backward passes; an image G with
    100 noise inputs: 100 tangent passes rather than 784 backward ones)."""
    if z.ndim != 2:
        raise ValueError(f"jacobian_norms: expected noise of shape (N, n), got {tuple(z.shape)}")
    n = z.shape[1] if n_inputs is None else int(n_inputs)
    if not 1 <= n <= z.shape[1]:
        raise ValueError(f"jacobian_norms: n_inputs must be in 1..{z.shape[1]} (the noise's columns), got {n_inputs!r}")
    xp = get_xp(z)
    y, tape = net.forward(z, train=False)
    m = int(np.prod(y.shape[1:]))
    sq = xp.zeros(len(z), dtype=np.float64)
    if m <= n:
        for i in range(m):                         # row i of J: the backward of dy = e_i
            dy = xp.zeros((len(z), m), dtype=y.dtype)
            dy[:, i] = 1
            dz, _ = net.backward(dy.reshape(y.shape), tape, param_grads=False)
            sq += (dz[:, :n].astype(np.float64) ** 2).sum(axis=1)
    else:
        for j in range(n):                         # column j of J: the tangent along x_dot = e_j
            z_dot = xp.zeros(z.shape, dtype=z.dtype)
            z_dot[:, j] = 1
            y_dot, _ = net.jvp(tape, x_dot=z_dot)
            sq += (y_dot.reshape(len(z), m).astype(np.float64) ** 2).sum(axis=1)
    return y, np.sqrt(np.asarray(to_backend(sq, "numpy"), dtype=np.float64))


def jacobian_norms_in_chunks(net, z, n_inputs=None, chunk=None):
    """jacobian_norms of ``z`` (N, n), at most ``chunk`` rows per pass (None: all at once): the same
    (y, norms), with the memory of one chunk's tape and tangents."""
    _check_chunk("jacobian_norms_in_chunks", chunk)
    step = max(len(z) if chunk is None else int(chunk), 1)               # (N = 0: one empty pass)
    parts = [jacobian_norms(net, z[lo:lo + step], n_inputs) for lo in range(0, max(len(z), 1), step)]
    y = parts[0][0] if len(parts) == 1 else get_xp(parts[0][0]).concatenate([p[0] for p in parts])
    return y, np.concatenate([p[1] for p in parts])


def _check_chunk(where, chunk):
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1):
        raise ValueError(f"{where}: chunk must be an int >= 1 (inputs per Jacobian pass) or None, got {chunk!r}")


def truncation_threshold(norms, q):
    """tau: the (1 - q) quantile of calibration ``norms`` (the largest norm kept), so that a fraction
    q of that noise lies above it; q = 0 keeps everything (tau = inf)."""
    check_truncate(q)
    return float("inf") if q == 0 else float(np.quantile(np.asarray(norms, dtype=np.float64), 1 - q))


def check_truncate(q):
    """q must be a fraction in [0, 1): the share of the noise rejected; -> float(q)."""
    if isinstance(q, bool) or not isinstance(q, (int, float, np.number)) or not 0 <= q < 1:
        raise ValueError(f"truncate must be a fraction in [0, 1) (the share of the noise rejected; 0: off), got {q!r}")
    return float(q)


def truncated_sample(net, draw, n, tau, n_inputs=None, max_rounds=1000, chunk=None):
    """n outputs of ``net`` (a backend array, in order) for noise from ``draw(idx) -> z`` (the inputs
    of positions ``idx``; a conditional G's labels are fixed per position), each position redrawn
    until its Jacobian norm is at most ``tau``.  Position i's first draw is the one an untruncated
    sampler would use, so the two agree wherever the first draw is kept.  ``chunk``: the most inputs
    one Jacobian pass takes (its tape and tangents grow with them: memory); None: all at once.  Each
    round's noise is drawn at once whatever the chunk, so the draws do not depend on it."""
    _check_chunk("truncated_sample", chunk)
    pending = np.arange(n)
    out = None
    for _ in range(max_rounds):
        z = draw(pending)
        y, norms = jacobian_norms_in_chunks(net, z, n_inputs, chunk)
        if out is None:
            out = get_xp(y).zeros((n,) + tuple(y.shape[1:]), dtype=y.dtype)
        keep = norms <= tau
        where = "cupy" if is_cupy_array(y) else "numpy"
        out[to_backend(pending[keep], where)] = y[to_backend(np.flatnonzero(keep), where)]
        pending = pending[~keep]
        if not len(pending):
            return out
    raise RuntimeError(f"truncated_sample: {len(pending)} of {n} positions found no noise with ||dG/dz||_F <= "
                       f"{tau:.4g} in {max_rounds} draws each; the threshold does not fit this G (recalibrate it)")
