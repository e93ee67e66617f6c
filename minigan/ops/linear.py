"""Affine map. Reference: torch.nn.functional.linear."""
from . import accurate_sum, add, check_dout, matmul, with_bias


def linear_forward(x, weight, bias=None):
    """y = x W^T + b.    x (N, I), W (O, I), b (O,) or None -> y (N, O)"""
    y = matmul(x, weight.T)
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
    dx = matmul(dy, weight) if input_grad else None    # (N, I)
    if not param_grads:
        return dx, None, None
    dweight = matmul(dy.T, x)                          # (O, I)
    dbias = accurate_sum(dy, 0) if has_bias else None       # (O,)
    return dx, dweight, dbias


def linear_jvp(x_dot, w_dot, b_dot, cache):
    """y_dot = x_dot W^T + x W_dot^T + b_dot   (the product rule; None tangents are zero)."""
    x, weight, _ = cache
    y_dot = add(None if x_dot is None else matmul(x_dot, weight.T),
                None if w_dot is None else matmul(x, w_dot.T))
    return with_bias(y_dot, b_dot, (x.shape[0], weight.shape[0]), 1)


def linear_backward_jvp(dy, dy_dot, x_dot, w_dot, cache, param_grads=True, input_grad=True):
    """The tangent of linear_backward along (x_dot, W_dot, dy_dot):
        dx_dot = dy_dot W + dy W_dot;   dW_dot = dy_dot^T x + dy^T x_dot;   db_dot = sum_n dy_dot
    -> (dx_dot, dW_dot, db_dot), None for a zero (or not asked for) result."""
    x, weight, has_bias = cache
    dx_dot = dw_dot = db_dot = None
    if input_grad:
        dx_dot = add(None if dy_dot is None else matmul(dy_dot, weight),
                     None if w_dot is None else matmul(dy, w_dot))
    if param_grads:
        dw_dot = add(None if dy_dot is None else matmul(dy_dot.T, x),
                     None if x_dot is None else matmul(dy.T, x_dot))
        db_dot = accurate_sum(dy_dot, 0) if has_bias and dy_dot is not None else None
    return dx_dot, dw_dot, db_dot
