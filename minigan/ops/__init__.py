"""Pure math: every op is a pair ``*_forward(...) -> (out, cache)`` / ``*_backward(dout, cache)``,
with the tangents of both beside it (``*_jvp``, ``*_backward_jvp``: Pearlmutter's R-operator).

No classes and no state; layers in ``minigan.nn`` call these. Each backward checks that the
upstream gradient has the shape of the forward's output: a shape bug is caught loudly here
instead of being broadcast silently.  An op module holds the reference math only; a fast twin
(``_numba.py`` on the CPU, ``_cupy.py`` on the GPU) is bound to its op in one visible line,
``@fast_twin(_numba.<name>, _cupy.<name>)``.
"""
import functools

from ..backend import get_xp


def check_dout(op, dout, shape):
    """Raise if ``dout`` does not have the forward output's ``shape``."""
    if tuple(dout.shape) != tuple(shape):
        raise ValueError(f"{op}: upstream gradient has shape {tuple(dout.shape)}, "
                         f"but the forward output had shape {tuple(shape)}")


def matmul(a, b):
    """``a @ b`` for 2-D a (M, K) and b (K, N).  Where K = 1 the product is an outer product, and it is
    computed as one, ``a * b``: BLAS's GEMM takes 3-8x longer there on the CPU (D's last layer, dx = dy W:
    (256, 1) @ (1, 128) 70-85 us against 29; (64, 1) @ (1, 6272) 0.96 ms against 0.12).  The ``+= 0`` gives
    what a GEMM gives, whose sum starts at +0: +0, not -0, where a * b is -0 (the rest is the same bits)."""
    if a.ndim == 2 and b.ndim == 2 and a.shape[1] == 1 and b.shape[0] == 1:
        out = a * b                                     # (M, 1) * (1, N) -> (M, N)
        out += 0
        return out
    return a @ b


def accurate_sum(x, axis, keepdims=False):
    """``x.sum(axis)`` with a float64 accumulator, returned in x's dtype.

    Bias, BatchNorm and LayerNorm gradients are sums that cancel heavily (dbeta = sum dy); a float32
    accumulator loses digits there (torch's CPU kernels use cascade sums for the same reason).
    No float64 copy of ``x`` is made: the cast happens inside the reduction.
    """
    if x.dtype.itemsize < 8:
        return x.sum(axis=axis, dtype="float64", keepdims=keepdims).astype(x.dtype)
    return x.sum(axis=axis, keepdims=keepdims)


def fast_twin(*twins):
    """Bind fast twins to the reference op they decorate: each twin takes the op's arguments and
    returns its result, or None where it does not apply (switched off, arrays it does not handle);
    the first that applies answers, else the reference math runs.  ``op.reference`` is the reference
    alone: the twins' test oracle."""
    def bind(reference):
        @functools.wraps(reference)
        def op(*args, **kwargs):
            for twin in twins:
                out = twin(*args, **kwargs)
                if out is not None:
                    return out
            return reference(*args, **kwargs)
        op.reference = reference
        return op
    return bind


# ---------------------------------------------------------------- tangents
# A tangent argument may be None, meaning zero: the term it would contribute is skipped, and a
# tangent function returns None for a result that is identically zero (so a net whose input has
# no tangent does no work for it in the layers before the first one with a parameter tangent).

def add(a, b):
    """a + b, where None stands for zero (None + None = None)."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def scaled(a, s):
    """a * s, None (zero) stays None."""
    return None if a is None else a * s


def with_bias(y_dot, b_dot, shape, axis):
    """y_dot + b_dot broadcast along ``axis`` of ``shape`` (b_dot None: y_dot as it is; y_dot
    None: b_dot broadcast into a new array of ``shape``)."""
    if b_dot is None:
        return y_dot
    bshape = [1] * len(shape)
    bshape[axis] = -1
    b = b_dot.reshape(bshape)
    if y_dot is None:
        return get_xp(b_dot).zeros(shape, dtype=b_dot.dtype) + b
    return y_dot + b
