"""The pieces every layer shares: the error types, argument parsing, input checks and ``Layer``."""
import numpy as np

INIT_SCHEMES = ("torch", "dcgan")


class LayerInputError(ValueError, TypeError):
    """Bad input to a layer: names the layer (and its path in the net), what it got, what it expected."""

    def __init__(self, layer, message, path=()):
        self.layer, self.message, self.path = layer, message, tuple(path)
        where = f"layer {'.'.join(self.path)} " if self.path else ""
        super().__init__(f"{where}{layer!r}: {message}")

    def at(self, name):
        """The same error one level further out, its path prefixed with ``name``."""
        return LayerInputError(self.layer, self.message, (str(name),) + self.path)


class StateDictError(KeyError, ValueError):
    """A state dict that does not fit the network (missing/unexpected keys, wrong shapes)."""

    def __str__(self):
        return str(self.args[0])


# ---------------------------------------------------------------- helpers

def _pair(value, what, allow_zero=True):
    """An int or a pair of ints -> (a, b), validated."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    lo = 0 if allow_zero else 1
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v >= lo for v in pair):
        raise ValueError(f"{what} must be an int or a pair of ints >= {lo}, got {value!r}")
    return (int(pair[0]), int(pair[1]))


def _positive_int(value, what):
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


def _grads(**named):
    """Keep the gradients that were computed (drop None)."""
    return {k: v for k, v in named.items() if v is not None}


def _check_input(layer, x, ndim, channels=None, dtype=None, layout=""):
    """Rank, channel count (axis 1) and dtype checks shared by the layers."""
    shape = tuple(x.shape)
    if x.ndim not in ndim:
        want = f"an input of at least {ndim.start} dimensions" if isinstance(ndim, range) else \
            f"a {' or '.join(f'{n}-d' for n in ndim)} input"
        raise LayerInputError(layer, f"expected {want} {layout}, got shape {shape}")
    if channels is not None and shape[1] != channels:
        raise LayerInputError(layer, f"expected {channels} channels (axis 1) {layout}, got shape {shape}")
    if dtype is not None and x.dtype != dtype:
        raise LayerInputError(layer, f"expected dtype {dtype}, got {x.dtype} (convert the input, or "
                                     f"build the network with dtype={x.dtype})")


def _uniform(rng, shape, bound, dtype):
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def layer_backward(layer, params, dy, cache, param_grads, input_grad):
    """``layer.apply_backward`` -> (dx, grads), dx None unless ``input_grad``: a layer whose class says it can
    (``skips_input_grad``) skips dx's work; any other (duck-typed ones need not say) computes dx, then dropped."""
    if input_grad:
        return layer.apply_backward(params, dy, cache, param_grads)
    if getattr(layer, "skips_input_grad", False):
        return layer.apply_backward(params, dy, cache, param_grads, input_grad=False)
    return None, layer.apply_backward(params, dy, cache, param_grads)[1]


class Layer:
    """Base for the built-in layers: no parameters, no state.

    ``skips_input_grad``: True where apply_backward takes ``input_grad=False`` and then skips the input
    gradient's work (dx None); Sequential computes the others' dx and drops it.  (apply_backward_jvp
    takes ``input_grad`` on every layer.)"""
    skips_input_grad = False

    def init(self, rng, dtype, scheme="torch"):
        return {}, {}

    def __repr__(self):
        args = ", ".join(self._repr_args())
        return f"{type(self).__name__}({args})"

    def _repr_args(self):
        return []
