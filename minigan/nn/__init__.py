"""Layers (hyperparameters only) and ``Sequential`` (the arrays: parameters and state).

A layer is anything with three methods (duck-typed, no registry):
    init(rng, dtype, scheme)                      -> (params, state)   nested dicts of numpy arrays
    apply(params, state, x, train, rng)           -> (y, cache)        state (BN stats) updated in place
    apply_backward(params, dy, cache, param_grads) -> (dx, grads)      grads nested like params
A layer whose class sets ``skips_input_grad = True`` (Linear, Conv2d, ConvTranspose2d, SpectralNorm,
Embedding, Sequential) also takes ``input_grad=False`` there (dx None, its work skipped); Sequential
asks only those, and drops the dx of the rest.  Second order (``Sequential.jvp`` / ``backward_jvp``)
needs two more, the tangents (None stands for a zero tangent, params_dot is nested like params,
missing keys are zero; every apply_backward_jvp takes ``input_grad``):
    apply_jvp(params, params_dot, x_dot, cache)                     -> (y_dot, tcache)
    apply_backward_jvp(params, params_dot, dy, dy_dot, cache, tcache,
                       param_grads=True, input_grad=True)           -> (dx_dot, grads_dot)
The math lives in ``minigan.ops``; a layer checks its input, calls the op and names the gradients.
Parameter names, layouts, defaults and initialisation follow PyTorch.
``Sequential`` runs some adjacent pairs (Upsample + conv, conv + AvgPool2d) as one cheaper op with the
same math: ``minigan.nn.fuse`` lists them, and ``fuse.set_fusion`` switches that off.
"""
from .activations import Dropout, LeakyReLU, ReLU, Sigmoid, Tanh
from .affine import Conv2d, ConvTranspose2d, Embedding, Linear, SpectralNorm
from .base import INIT_SCHEMES, Layer, LayerInputError, StateDictError
from .containers import Residual, Sequential, TangentTape, Tape, flatten_tree, walk
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm
from .shape import AvgPool2d, Flatten, Reshape, Upsample

__all__ = ["Linear", "Conv2d", "ConvTranspose2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "Dropout",
           "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Flatten", "Reshape", "Upsample", "AvgPool2d",
           "SpectralNorm", "Embedding", "Residual", "Sequential", "Tape", "TangentTape", "Layer", "LayerInputError", "StateDictError", "INIT_SCHEMES",
           "flatten_tree", "walk"]
