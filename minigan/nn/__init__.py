"""Layers (hyperparameters only) and ``Sequential`` (the arrays: parameters and state).

A layer is anything with three methods (duck-typed, no registry):
    init(rng, dtype, scheme)                      -> (params, state)   nested dicts of numpy arrays
    apply(params, state, x, train, rng)           -> (y, cache)        state (BN stats) updated in place
    apply_backward(params, dy, cache, param_grads) -> (dx, grads)      grads nested like params
Linear, Conv2d, ConvTranspose2d and Sequential also take ``input_grad=False`` (dx None, its work skipped).
The math lives in ``minigan.ops``; a layer checks its input, calls the op and names the gradients.
Parameter names, layouts, defaults and initialisation follow PyTorch.
"""
from .activations import Dropout, LeakyReLU, ReLU, Sigmoid, Tanh
from .affine import Conv2d, ConvTranspose2d, Linear
from .base import INIT_SCHEMES, Layer, LayerInputError, StateDictError
from .containers import Residual, Sequential, Tape, flatten_tree
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm
from .shape import AvgPool2d, Flatten, Reshape, Upsample

__all__ = ["Linear", "Conv2d", "ConvTranspose2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "Dropout",
           "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Flatten", "Reshape", "Upsample", "AvgPool2d",
           "Residual", "Sequential", "Tape", "Layer", "LayerInputError", "StateDictError", "INIT_SCHEMES",
           "flatten_tree"]
