"""Embedding lookup. Reference: torch.nn.Embedding (weight (num_embeddings, embedding_dim))."""
from . import check_dout
from ..backend import get_xp


def embedding_forward(idx, weight):
    """y[..., :] = W[idx[...], :].   idx integers (any shape) in [0, num_embeddings) -> y idx.shape + (D,)"""
    return weight[idx], (idx, weight.shape)


def embedding_backward(dy, cache):
    """dW[k] = sum over the positions where idx == k of dy (a scatter-add; no gradient for idx)."""
    idx, w_shape = cache
    check_dout("embedding_backward", dy, tuple(idx.shape) + (w_shape[1],))
    xp = get_xp(dy)
    dw = xp.zeros(w_shape, dtype=dy.dtype)
    xp.add.at(dw, idx.reshape(-1), dy.reshape(-1, w_shape[1]))
    return dw


def embedding_jvp(w_dot, cache):
    """y_dot = W_dot[idx]   (the lookup is linear in W; idx has no tangent)"""
    idx, _ = cache
    return None if w_dot is None else w_dot[idx]


def embedding_backward_jvp(dy_dot, cache):
    """dW_dot = scatter-add of dy_dot (the backward is linear in dy and independent of W)"""
    return None if dy_dot is None else embedding_backward(dy_dot, cache)
