"""Affine map. Reference: torch.nn.functional.linear."""
from . import accurate_sum, check_dout


def linear_forward(x, weight, bias=None):
    """y = x W^T + b.    x (N, I), W (O, I), b (O,) or None -> y (N, O)"""
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y, (x, weight, bias is not None)


def linear_backward(dy, cache, param_grads=True, input_grad=True):
    """dx = dy W;   dW = dy^T x;   db = sum_n dy.

    Returns (dx, dW, db); dW and db are None when ``param_grads`` is False, dx is None when
    ``input_grad`` is False (no work is done for them), and db is None when the forward had no bias.
    """
    x, weight, has_bias = cache
    check_dout("linear_backward", dy, (x.shape[0], weight.shape[0]))
    dx = dy @ weight if input_grad else None           # (N, I)
    if not param_grads:
        return dx, None, None
    dweight = dy.T @ x                                 # (O, I)
    dbias = accurate_sum(dy, 0) if has_bias else None       # (O,)
    return dx, dweight, dbias
