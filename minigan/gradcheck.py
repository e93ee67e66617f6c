"""Finite-difference gradient checks (public: this is how every backward in minigan is proven).

Central differences in float64 of the scalar  S(x) = sum(f(x) * dout)  for a *random* upstream
gradient ``dout`` (an all-ones dout hides bugs such as a missing BatchNorm term):

    dS/dx_i ~ sum( (f(x + h e_i) - f(x - h e_i)) * dout ) / (2 h)        error O(h^2)

The outputs are subtracted before the dot product, which keeps round-off small.  For large
tensors ``directional_error`` checks one random direction u with two forwards:
    (S(x + h u) - S(x - h u)) / (2 h)  ~  <dS/dx, u>.

Second order (``check_jvp``): a tangent is a directional derivative, so one central difference along
the tangent's own direction checks all of it, for the forward and for the backward alike, here the
five-point one (error O(h^4), so h can be larger and round-off smaller than with two points):
    y_dot  ~ (-y(p + 2h p_dot) + 8 y(p + h p_dot) - 8 y(p - h p_dot) + y(p - 2h p_dot)) / (12 h),
    p = (x, params, dy).
"""
import contextlib

import numpy as np

from .backend import get_xp

__all__ = ["rel_error", "numerical_vjp", "directional_error", "check_net", "check_loss", "check_jvp"]


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
    with paused_power_iteration(net):
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


@contextlib.contextmanager
def paused_power_iteration(net):
    """SpectralNorm's u and v are constants of its derivative (as in torch), but every train-mode
    forward moves them: inside this block the power iteration is paused, so the differences of a
    check all see the u and v of the analytic pass."""
    from .nn import SpectralNorm, walk
    layers = [m for m in walk(net) if isinstance(m, SpectralNorm)]
    saved = [sn.n_power_iterations for sn in layers]
    for sn in layers:
        sn.n_power_iterations = 0
    try:
        yield
    finally:
        for sn, n in zip(layers, saved):
            sn.n_power_iterations = n


def check_jvp(net, x, train=True, h=1e-5, seed=0):
    """Compare ``net.jvp`` and ``net.backward_jvp`` with central differences of the forward and of
    the backward along random tangents of the input, of every parameter and of dy (float64).

    -> {"output": err, "input gradient": err, "gradient of <name>": err, ...} (max relative errors).
    The net's state is restored before every evaluation and dropout masks are fixed by re-seeding,
    so each difference sees the same function (SpectralNorm: ``paused_power_iteration``).  The tangents come from their own stream, never equal to default_rng(seed)'s
    draws (a tangent parallel to x would test BatchNorm's scale invariance, not its derivative)."""
    rng = np.random.default_rng([seed, 1])
    xp = get_xp(x)
    params = net.parameters()
    y, tape = net.forward(x, train=train, rng=np.random.default_rng(seed + 1))
    state = net.state_dict()                            # after this forward's power iteration
    def unit(shape):        # unit-norm tangents: small steps, so that no kink is crossed in between
        u = rng.standard_normal(shape)
        return xp.asarray(u / max(np.linalg.norm(u), 1e-300))
    x_dot, dy, dy_dot = unit(x.shape), xp.asarray(rng.standard_normal(y.shape)), unit(y.shape)
    p_dot = {k: unit(p.shape) for k, p in params.items()}
    y_dot, ttape = net.jvp(tape, x_dot, p_dot)
    dx_dot, grads_dot = net.backward_jvp(dy, tape, ttape, dy_dot)

    def run(t):
        """(y, dx, grads) at (x, params, dy) + t (x_dot, params_dot, dy_dot)."""
        net.load_state_dict({**state, **{k: state[k] + t * p_dot[k] for k in params}})
        y, tape = net.forward(x + t * x_dot, train=train, rng=np.random.default_rng(seed + 1))
        dx, grads = net.backward(dy + t * dy_dot, tape)
        return y.copy(), dx, grads

    try:
        with paused_power_iteration(net):
            points = [run(t * h) for t in (2, 1, -1, -2)]
    finally:
        net.load_state_dict(state)

    def slope(get):
        a, b, c, d = (get(p) for p in points)
        return (8 * (b - c) - (a - d)) / (12 * h)
    errors = {"output": rel_error(y_dot, slope(lambda p: p[0])),
              "input gradient": rel_error(dx_dot, slope(lambda p: p[1]))}
    for k in params:
        errors[f"gradient of {k}"] = rel_error(grads_dot[k], slope(lambda p: p[2][k]))
    return errors
