"""minigan: an autograd-free GAN engine; every backward pass is written by hand.

    import numpy as np, minigan
    G = minigan.Sequential(minigan.Linear(100, 256), minigan.LeakyReLU(0.2),
                           minigan.Linear(256, 784), minigan.Tanh(), seed=0)
    y, tape = G.forward(z, train=True)
    dz, grads = G.backward(dy, tape)
"""
from . import checkpoint, gradcheck, ops
from .backend import (BackendError, asnumpy, get_backend, get_xp, has_cupy, set_backend,
                      to_backend)
from .checkpoint import load, save
from .gan.losses import OBJECTIVES, Objective, gan_objective
from .nn import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d, Dropout, Embedding, Flatten,
                 LayerInputError, LayerNorm, LeakyReLU, Linear, ReLU, Reshape, Residual, Sequential,
                 Sigmoid, SpectralNorm, StateDictError, Tanh, Upsample)
from .ops.losses import bce_with_logits, mse
from .optim import (SGD, Adam, AdamW, CosineAnnealingLR, ExponentialLR, StepLR, clip_grad_norm,
                    clip_grad_value, global_norm, l1_regularization, l2_regularization)

__version__ = "0.1.0"

__all__ = [
    "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "ConvTranspose2d", "Dropout", "Embedding", "Flatten",
    "LayerNorm", "LeakyReLU", "Linear", "ReLU", "Reshape", "Residual", "Sequential", "Sigmoid", "SpectralNorm", "Tanh",
    "Upsample", "LayerInputError", "StateDictError",
    "SGD", "Adam", "AdamW", "StepLR", "ExponentialLR", "CosineAnnealingLR", "clip_grad_norm",
    "clip_grad_value", "global_norm", "l1_regularization", "l2_regularization",
    "bce_with_logits", "mse", "gan_objective", "Objective", "OBJECTIVES",
    "set_backend", "get_backend", "get_xp", "has_cupy", "to_backend", "asnumpy", "BackendError",
    "save", "load", "gradcheck", "checkpoint", "ops", "__version__",
]
