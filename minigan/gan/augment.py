"""Differentiable augmentation of D's inputs (DiffAugment: Zhao, Liu, Lin, Zhu & Han, NeurIPS 2020).

With few training images D memorises them, and G's gradient then says "be those images" rather than
"be that distribution".  DiffAugment shows D only augmented images, real and fake alike, each with
its own random transform T drawn per sample and per forward; G's gradient flows back through T:

    D step:   L_D = E l_D(D(T_1 x), D(T_2 G(z)))          (T_1, T_2 drawn independently)
    G step:   L_G = E l_G(D(T_3 G(z))),    dL_G/dG(z) = T_3^T dL_G/d(T_3 G(z))

Both transforms here are linear in the image (they only move or zero pixels), so their backward is
their adjoint T^T, no Jacobian to store:

    translation  y[n, c, h, w] = x[n, c, h - a_n, w - b_n]   (0 where the source is off the image),
                 a_n, b_n uniform integers in [-s, s], s = round(size / 8)
                 adjoint: the translation by (-a_n, -b_n), also zero-filled
    cutout       y = x * M_n, M_n 0 on one square of side round(size / 2) whose top-left corner is
                 uniform in [-side // 2, size - side // 2] (the square may hang off the edge), 1 elsewhere
                 adjoint: the same mask, g * M_n (self-adjoint)

and T = cutout o translation, T^T = translation^T o cutout^T.  Zero is the fill value, as in the
paper's code (mid-grey for images in [-1, 1]).  A gradient penalty (R1 / R2 / WGAN-GP) is then taken
at D's inputs, the augmented images: R1 penalises D's slope where D actually looks.

The random parameters are drawn on the host (a numpy Generator: the trainer's own, so runs resume
exactly and K data-parallel ranks take their slices of the global batch's draws) and applied with
whatever array module the images live in (numpy or CuPy).
"""
import numpy as np

from ..backend import get_xp

KINDS = ("translation", "cutout")
TRANSLATION_RATIO = 1 / 8          # the paper's defaults
CUTOUT_RATIO = 1 / 2


def parse_augment(spec):
    """``"none"`` -> (); ``"translation,cutout"`` -> ("translation", "cutout"), in the order they are applied
    (translation first, whatever order the spec names them in).  A ValueError names what is wrong."""
    if not isinstance(spec, str):
        raise ValueError(f"augment must be a string: 'none' or a comma-separated list of {', '.join(KINDS)}; "
                         f"got {spec!r}")
    if spec.strip() in ("none", ""):
        return ()
    kinds = [k.strip() for k in spec.split(",")]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown augment {', '.join(map(repr, unknown))}; expected 'none' or a comma-separated "
                         f"list of {', '.join(KINDS)} (e.g. 'translation,cutout')")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"augment names a transform twice: {spec!r}")
    return tuple(k for k in KINDS if k in kinds)


def _round_half_up(v):
    return int(v + 0.5)


def _sides(h, w, ratio):
    """round(size * ratio) along each axis: the largest shift (TRANSLATION_RATIO), the cutout's side (CUTOUT_RATIO)."""
    return np.array([_round_half_up(h * ratio), _round_half_up(w * ratio)])


def draw_params(kinds, n, sample_shape, rng):
    """-> the random parameters of ``n`` transforms of images of shape ``sample_shape`` = (C, H, W), as a
    dict of host int64 arrays: "shift" (n, 2) = (a, b) and "corner" (n, 2) = the cutout square's top-left
    (row, column); None when ``kinds`` is empty (no draw is made)."""
    if not kinds:
        return None
    if len(sample_shape) != 3:
        raise ValueError(f"augment needs images (N, C, H, W); these samples have shape {tuple(sample_shape)} "
                         f"(set augment 'none' for vector data)")
    h, w = int(sample_shape[1]), int(sample_shape[2])
    out = {}
    if "translation" in kinds:
        s = _sides(h, w, TRANSLATION_RATIO)
        out["shift"] = rng.integers(-s, s + 1, size=(n, 2))
    if "cutout" in kinds:
        side = _sides(h, w, CUTOUT_RATIO)
        out["corner"] = rng.integers(-(side // 2), np.array([h, w]) - side // 2 + 1, size=(n, 2))
    return out


def _translate(x, shift, sign):
    """y[n, :, h, w] = x[n, :, h - sign a_n, w - sign b_n], 0 where that is off the image."""
    xp = get_xp(x)
    n, _, h, w = x.shape
    sh = xp.asarray(sign * shift)
    rows = xp.arange(h)[None, :] - sh[:, :1]                   # (N, H): the source row of each output row
    cols = xp.arange(w)[None, :] - sh[:, 1:]                   # (N, W)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]     # (N, H, W)
    rows, cols = xp.clip(rows, 0, h - 1), xp.clip(cols, 0, w - 1)
    y = x[xp.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]    # (N, H, W, C): gathered
    return y.transpose(0, 3, 1, 2) * inside[:, None].astype(x.dtype)


def _cutout_mask(params, shape, xp, dtype):
    _, _, h, w = shape
    corner = xp.asarray(params["corner"])
    side = _sides(h, w, CUTOUT_RATIO)
    r = xp.arange(h)[None, :] - corner[:, :1]                  # (N, H): the row's offset into the square
    c = xp.arange(w)[None, :] - corner[:, 1:]
    in_r = (r >= 0) & (r < int(side[0]))
    in_c = (c >= 0) & (c < int(side[1]))
    return (~(in_r[:, :, None] & in_c[:, None, :]))[:, None].astype(dtype)      # (N, 1, H, W)


def _check(x, params):
    n = len(next(iter(params.values())))
    if x.ndim != 4 or len(x) != n:
        raise ValueError(f"augment: expected images (N, C, H, W) with N = {n} (the draw's), got {tuple(x.shape)}")


def augment(x, params):
    """T x: the transforms ``params`` (draw_params) applied to images x (N, C, H, W); x itself when None."""
    if params is None:
        return x
    _check(x, params)
    if "shift" in params:
        x = _translate(x, params["shift"], 1)
    if "corner" in params:
        x = x * _cutout_mask(params, x.shape, get_xp(x), x.dtype)
    return x


def augment_adjoint(g, params):
    """T^T g: the backward of ``augment`` (T is linear): the cutout's mask, then the opposite translation."""
    if params is None:
        return g
    _check(g, params)
    if "corner" in params:
        g = g * _cutout_mask(params, g.shape, get_xp(g), g.dtype)
    if "shift" in params:
        g = _translate(g, params["shift"], -1)
    return g
