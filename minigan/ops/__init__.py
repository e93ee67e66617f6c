"""Pure math: every op is a pair ``*_forward(...) -> (out, cache)`` / ``*_backward(dout, cache)``.

No classes and no state; layers in ``minigan.nn`` call these. Each backward checks that the
upstream gradient has the shape of the forward's output: a shape bug is caught loudly here
instead of being broadcast silently.
"""


def check_dout(op, dout, shape):
    """Raise if ``dout`` does not have the forward output's ``shape``."""
    if tuple(dout.shape) != tuple(shape):
        raise ValueError(f"{op}: upstream gradient has shape {tuple(dout.shape)}, "
                         f"but the forward output had shape {tuple(shape)}")
