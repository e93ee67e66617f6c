"""Scalar losses that return (loss, dinput) in one call; ``loss`` is a 0-d array of the input's
backend (``float(loss)`` reads it)."""
import numpy as np

from .activations import sigmoid, softplus
from ..backend import get_xp


def bce_with_logits(logits, target):
    """loss = -mean( t log σ(x) + (1 - t) log(1 - σ(x)) ) = mean( t softplus(-x) + (1 - t) softplus(x) ),
    a sum of two non-negative, stably evaluated terms: finite and accurate for logits of any size
    (torch's form max(x, 0) - t x + log1p(e^-|x|) loses the digits of losses below ~eps |x|).
    dloss/dx = ((1 - t) σ(x) - t σ(-x)) / numel   (= (σ(x) - t) / numel, without cancellation at t = 0, 1).
    target: an array broadcastable to logits, or a scalar.  Reference: torch.nn.BCEWithLogitsLoss."""
    xp = get_xp(logits)
    t = xp.asarray(target, dtype=logits.dtype)
    if t.ndim and np.broadcast_shapes(t.shape, logits.shape) != logits.shape:
        raise ValueError(f"bce_with_logits: target shape {t.shape} does not broadcast to logits shape {logits.shape}")
    n = logits.size
    loss = (t * softplus(-logits) + (1 - t) * softplus(logits)).sum() / n
    return loss, ((1 - t) * sigmoid(logits) - t * sigmoid(-logits)) / n


def mse(pred, target):
    """loss = mean (p - t)^2;  dloss/dp = 2 (p - t) / numel.  Reference: torch.nn.MSELoss."""
    diff = pred - target
    return (diff * diff).sum() / pred.size, diff * (2 / pred.size)


def softmax_cross_entropy(logits, labels):
    """loss = mean_n( logsumexp(x_n) - x_n[y_n] );   dloss/dx = (softmax(x) - onehot(y)) / N.
    logits (N, K), labels (N,) integers in [0, K).  Reference: torch.nn.CrossEntropyLoss."""
    xp = get_xp(logits)
    n, k = logits.shape
    labels = xp.asarray(labels)
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise ValueError(f"softmax_cross_entropy: labels must be ({n},) integers, got {labels.shape} {labels.dtype}")
    shifted = logits - logits.max(axis=1, keepdims=True)          # logsumexp without overflow
    e = xp.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    rows = xp.arange(n)
    loss = (xp.log(s[:, 0]) - shifted[rows, labels]).sum() / n
    dlogits = e / s
    dlogits[rows, labels] -= 1
    return loss, dlogits / n
