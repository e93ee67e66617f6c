"""Finite-difference gradient checks (public: this is how every backward in minigan is proven).

Central differences in float64 of the scalar  S(x) = sum(f(x) * dout)  for a *random* upstream
gradient ``dout`` (an all-ones dout hides bugs such as a missing BatchNorm term):

    dS/dx_i ~ sum( (f(x + h e_i) - f(x - h e_i)) * dout ) / (2 h)        error O(h^2)

The outputs are subtracted before the dot product, which keeps round-off small.  For large
tensors ``directional_error`` checks one random direction u with two forwards:
    (S(x + h u) - S(x - h u)) / (2 h)  ~  <dS/dx, u>.
"""
import numpy as np

from .backend import get_xp

__all__ = ["rel_error", "numerical_vjp", "directional_error", "check_net", "check_loss"]


def rel_error(a, b, floor=0.0):
    """max |a - b| / max(max |a|, max |b|, floor): the worst error relative to the gradient's scale
    (0 when both are all zero).  ``floor`` sets the smallest scale that counts, for gradients that
    are legitimately ~0 (a saturated loss, a conv bias just before BatchNorm)."""
    xp = get_xp(a, b)
    a, b = xp.asarray(a, dtype=np.float64), xp.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(float(xp.abs(a).max()), float(xp.abs(b).max()), floor)
    return 0.0 if scale == 0 else float(xp.abs(a - b).max()) / scale


def numerical_vjp(f, x, dout, h=1e-6):
    """d sum(f(x) * dout) / dx by central differences.  ``x`` is perturbed in place (and restored),
    so ``f`` may ignore its argument and read ``x`` through a closure (as for parameters)."""
    xp = get_xp(x)
    if x.dtype != np.float64:
        raise TypeError(f"numerical_vjp needs float64 arrays for meaningful differences, got {x.dtype}")
    if not x.flags.c_contiguous:
        raise ValueError("numerical_vjp perturbs x in place and needs a C-contiguous array")
    grad = xp.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)   # views, since x is contiguous
    for i in range(x.size):
        old = float(flat[i])
        flat[i] = old + h
        fp = f(x).copy()      # copies: an output may be a view of x (Flatten, Reshape, Upsample x1)
        flat[i] = old - h
        fm = f(x).copy()
        flat[i] = old
        gflat[i] = (((fp - fm) * dout).sum()) / (2 * h)
    return grad


def directional_error(f, x, dout, dx, h=1e-6, rng=None):
    """Relative error of <dx, u> against the central difference along a random unit vector u."""
    xp = get_xp(x)
    rng = np.random.default_rng(0) if rng is None else rng
    u = rng.standard_normal(x.shape)
    u = xp.asarray(u / np.linalg.norm(u))
    x0 = x.copy()
    x[...] = x0 + h * u
    fp = f(x).copy()
    x[...] = x0 - h * u
    fm = f(x).copy()
    x[...] = x0
    numeric = float(((fp - fm) * dout).sum()) / (2 * h)
    analytic = float((dx * u).sum())
    return abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-300)


def check_net(net, x, train=True, h=1e-6, seed=0, max_numel=4096):
    """Compare ``net.backward`` with finite differences for the input and every parameter.

    -> {"input": err, "<param name>": err, ...} (max relative errors).  Dropout masks are fixed by
    re-seeding the rng on every forward; tensors above ``max_numel`` use ``directional_error``.
    """
    rng = np.random.default_rng(seed)
    xp = get_xp(x)

    def f(_):
        return net.forward(x, train=train, rng=np.random.default_rng(seed + 1))[0]

    y, tape = net.forward(x, train=train, rng=np.random.default_rng(seed + 1))
    dout = xp.asarray(rng.standard_normal(y.shape))
    dx, grads = net.backward(dout, tape)
    errors = {}
    for name, arr, analytic in [("input", x, dx)] + [(k, p, grads[k]) for k, p in net.parameters().items()]:
        if arr.size <= max_numel:
            errors[name] = rel_error(analytic, numerical_vjp(f, arr, dout, h))
        else:
            errors[name] = directional_error(f, arr, dout, analytic, h, rng)
    return errors


def check_loss(loss_fn, inputs, h=1e-6, seed=0):
    """``loss_fn(*inputs) -> (loss, d_input_0, d_input_1, ...)``; checks every d_input.
    -> list of max relative errors, one per input."""
    dout = np.random.default_rng(seed).standard_normal()
    analytic = loss_fn(*inputs)[1:]
    errors = []
    for i, arr in enumerate(inputs):
        numeric = numerical_vjp(lambda _: loss_fn(*inputs)[0], arr, dout, h)
        errors.append(rel_error(analytic[i] * dout, numeric))
    return errors
