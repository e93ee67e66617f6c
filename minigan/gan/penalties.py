"""Gradient penalties, exact, for any critic built from minigan's layers (second order by hand).

With F(x, theta) = sum_i D(x_i) and g = grad_x F (one backward with dy = 1), each penalty is a
function of g, and its parameter gradient needs the mixed second derivative of F.  Since
grad_theta (1/2) ||g||^2 = (d g / d theta)^T g = R_g{grad_theta F}  (the symmetry of mixed partials),
it is ONE tangent pass: ``jvp`` along x_dot = v (with v the penalty's gradient in g) and
``backward_jvp`` with dy = 1.  No finite differences anywhere (in float32 they would be useless).

    r1_penalty       (gamma / 2) mean_i ||g_i||^2              Mescheder et al. 2018 (R1; R2 on fakes)
    wgan_gp_penalty  lam mean_i (||g_i|| - 1)^2 at x_hat       Gulrajani et al. 2017
"""
import numpy as np

from ..backend import get_xp


def _input_gradient(D, x, train, rng, tape=None):
    """-> (ones, tape, g): D's forward on x (unless ``tape`` is given) and g = grad_x sum D(x)."""
    if tape is None:
        _, tape = D.forward(x, train=train, rng=rng)
    elif tuple(tape.in_shape) != tuple(x.shape):
        raise ValueError(f"the tape given was made from an input of shape {tuple(tape.in_shape)}, "
                         f"not of x's shape {tuple(x.shape)}")
    ones = get_xp(x).ones(tape.out_shape, dtype=x.dtype)
    g, _ = D.backward(ones, tape, param_grads=False)
    return ones, tape, g


def _second_order_grads(D, tape, ones, v):
    """R_v{grad_theta sum D} = (d g / d theta)^T v: one tangent pass along x_dot = v."""
    _, ttape = D.jvp(tape, x_dot=v)
    _, grads = D.backward_jvp(ones, tape, ttape, input_grad=False)
    return grads


def _sum_squares(g):
    """per-sample ||g_i||^2 (float64 accumulation), shape (N,), g's dtype"""
    return (g * g).reshape(len(g), -1).sum(axis=1, dtype=np.float64).astype(g.dtype)


def _check_batch(where, x):
    if not hasattr(x, "shape") or x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"{where}: expected a batch of inputs (N, ...) with N >= 1, got "
                         f"{getattr(x, 'shape', type(x).__name__)}")


def r1_penalty(D, x, gamma, train=True, rng=None, tape=None):
    """-> (value, grads): value = (gamma / 2) mean_i ||d sum(D(x)) / d x_i||^2 (a 0-d array), grads
    its gradient in D's parameters, keyed like ``D.parameters()``:
        grads = R_v{grad_theta sum D},  v = (gamma / N) g.
    R1 is this on real data, R2 on fakes.  ``train`` is the mode of D's forward here (batch
    statistics; BatchNorm running statistics are updated once more); ``rng`` draws D's dropout masks.
    ``tape``: D's tape of a forward on this very x (e.g. the D step's, before a backward frees it),
    which saves the forward (as torch's R1 reuses the loss's graph); the penalty then differentiates
    that forward, in its mode and with its dropout masks."""
    _check_batch("r1_penalty", x)
    ones, tape, g = _input_gradient(D, x, train, rng, tape)
    n = x.shape[0]
    value = _sum_squares(g).sum() * (gamma / (2 * n))
    return value, _second_order_grads(D, tape, ones, g * g.dtype.type(gamma / n))


def wgan_gp_penalty(D, real, fake, lam, alpha=None, rng=None, train=True, dropout_rng=None):
    """-> (value, grads): with x_hat = real + alpha (fake - real), alpha (N,) per sample (drawn from
    U[0, 1] with ``rng``, a numpy Generator, when not given; ``dropout_rng`` draws D's dropout masks
    in its forward on x_hat, D's own generator when None) and g = grad_x sum D(x_hat):
        value = lam mean_i (||g_i|| - 1)^2
        grads = R_v{grad_theta sum D},  v_i = (2 lam / N) (||g_i|| - 1) / ||g_i|| g_i   (0 where g_i = 0,
                as torch's norm backward)
    keyed like ``D.parameters()``.  No gradient flows to real, fake or alpha."""
    _check_batch("wgan_gp_penalty", real)
    if getattr(fake, "shape", None) != real.shape:
        raise ValueError(f"wgan_gp_penalty: real and fake must have the same shape, got {tuple(real.shape)} "
                         f"and {getattr(fake, 'shape', type(fake).__name__)}")
    n, xp = real.shape[0], get_xp(real, fake)
    if alpha is None:
        rng = np.random.default_rng() if rng is None else rng
        alpha = rng.random(n)
    alpha = xp.asarray(alpha, dtype=real.dtype)
    if alpha.shape != (n,):
        raise ValueError(f"wgan_gp_penalty: alpha must have shape ({n},), one per sample, got {tuple(alpha.shape)}")
    x_hat = real + alpha.reshape((n,) + (1,) * (real.ndim - 1)) * (fake - real)
    ones, tape, g = _input_gradient(D, x_hat, train, dropout_rng)
    norms = xp.sqrt(_sum_squares(g))                                            # (N,)
    value = ((norms - 1) ** 2).sum() * (lam / n)
    safe = xp.where(norms > 0, norms, 1)
    coef = xp.where(norms > 0, (norms - 1) / safe, 0) * (2 * lam / n)
    v = g * coef.astype(g.dtype).reshape((n,) + (1,) * (g.ndim - 1))
    return value, _second_order_grads(D, tape, ones, v)
