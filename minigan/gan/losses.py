"""GAN objectives on discriminator logits: each returns the loss (a 0-d array) and its gradients.

With r, f the logits on real and fake samples, σ the sigmoid, softplus(x) = log(1 + e^x)
(so -log σ(x) = softplus(-x) and -log(1 - σ(x)) = softplus(x)), and means over the batch:

  objective        D loss                                    G loss
  minimax          -mean log σ(r) - mean log(1 - σ(f))        mean log(1 - σ(f))     Goodfellow et al. 2014
  non_saturating   same as minimax                            -mean log σ(f)         Goodfellow et al. 2014
  wasserstein      mean f - mean r                            -mean f                Arjovsky et al. 2017
  hinge            mean relu(1 - r) + mean relu(1 + f)        -mean f                Lim & Ye 2017
  least_squares    1/2 mean (r - 1)^2 + 1/2 mean f^2          1/2 mean (f - 1)^2     Mao et al. 2017

Each gradient is written out next to its loss below; ``n`` is the number of logits.  The tangents
of the gradients (``d_loss_jvp``, ``g_loss_jvp``: the Hessian-vector products in the logits, diagonal
since each loss is a mean of per-logit terms) give the whole GAN loss an HVP with the nets' tangents:
  minimax / non_saturating   d2/dx2 softplus(+-x) = σ(x) σ(-x)
  wasserstein, hinge         0 (hinge: almost everywhere)
  least_squares              1
"""
from ..backend import get_xp
from ..ops.activations import sigmoid, softplus


def _mean(x):
    return x.sum() / x.size


class Objective:
    """A named pair of losses; see the module docstring for the formulas."""

    def __init__(self, name):
        if name not in OBJECTIVES:
            raise ValueError(f"unknown GAN objective {name!r}; expected one of {sorted(OBJECTIVES)}")
        self.name = name

    def __repr__(self):
        return f"gan_objective({self.name!r})"

    def d_loss(self, logit_real, logit_fake):
        """-> (loss, dlogit_real, dlogit_fake)"""
        get_xp(logit_real, logit_fake)   # refuses mixed backends
        r, f = logit_real, logit_fake
        nr, nf = r.size, f.size
        if self.name in ("minimax", "non_saturating"):
            # d/dr softplus(-r) = σ(r) - 1 = -σ(-r) (no cancellation);   d/df softplus(f) = σ(f)
            loss = _mean(softplus(-r)) + _mean(softplus(f))
            return loss, -sigmoid(-r) / nr, sigmoid(f) / nf
        if self.name == "wasserstein":
            return _mean(f) - _mean(r), get_xp(r).full_like(r, -1 / nr), get_xp(f).full_like(f, 1 / nf)
        if self.name == "hinge":
            # d/dr relu(1 - r) = -[1 - r > 0];   d/df relu(1 + f) = [1 + f > 0]
            mr, mf = (1 - r) > 0, (1 + f) > 0
            loss = _mean((1 - r) * mr) + _mean((1 + f) * mf)
            return loss, mr * r.dtype.type(-1 / nr), mf * f.dtype.type(1 / nf)
        # least_squares: d/dr 1/2 (r - 1)^2 = r - 1;   d/df 1/2 f^2 = f
        return 0.5 * _mean((r - 1) ** 2) + 0.5 * _mean(f * f), (r - 1) / nr, f / nf

    def g_loss(self, logit_fake):
        """-> (loss, dlogit_fake)"""
        f, n = logit_fake, logit_fake.size
        if self.name == "minimax":
            # log(1 - σ(f)) = -softplus(f);   d/df = -σ(f)
            return -_mean(softplus(f)), -sigmoid(f) / n
        if self.name == "non_saturating":
            # -log σ(f) = softplus(-f);   d/df = σ(f) - 1 = -σ(-f)
            return _mean(softplus(-f)), -sigmoid(-f) / n
        if self.name == "least_squares":
            return 0.5 * _mean((f - 1) ** 2), (f - 1) / n
        # wasserstein, hinge: -mean f;   d/df = -1/n
        return -_mean(f), get_xp(f).full_like(f, -1 / n)


    def d_loss_jvp(self, logit_real, logit_fake, real_dot=None, fake_dot=None):
        """-> (dlogit_real_dot, dlogit_fake_dot): the tangents of d_loss's gradients along the logit
        tangents (None: zero), i.e. the Hessian of the D loss in the logits times (real_dot, fake_dot)."""
        get_xp(logit_real, logit_fake)
        return (self._hvp(logit_real, real_dot, logit_real.size),
                self._hvp(logit_fake, fake_dot, logit_fake.size))

    def g_loss_jvp(self, logit_fake, fake_dot=None):
        """-> dlogit_fake_dot: the tangent of g_loss's gradient along ``fake_dot`` (None: zero)."""
        return self._hvp(logit_fake, fake_dot, logit_fake.size, generator=True)

    def _hvp(self, x, x_dot, n, generator=False):
        """h(x) x_dot / n with h the second derivative of the per-logit term:
        softplus(+-x): σ(x) σ(-x) (minimax G: log(1 - σ(f)) = -softplus(f): -σ(f) σ(-f));
        least squares 1; wasserstein and hinge 0.  x_dot None is zero."""
        xp = get_xp(x)
        if x_dot is None:
            return xp.zeros_like(x)
        if x_dot.shape != x.shape:
            raise ValueError(f"{self!r}: the logit tangent has shape {tuple(x_dot.shape)}, the logits {tuple(x.shape)}")
        if self.name in ("minimax", "non_saturating"):
            h = sigmoid(x) * sigmoid(-x)
            return (-h if generator and self.name == "minimax" else h) * x_dot / n
        if self.name == "least_squares":
            return x_dot / n
        return xp.zeros_like(x)


OBJECTIVES = ("minimax", "non_saturating", "wasserstein", "hinge", "least_squares")


def gan_objective(name):
    """The objective called ``name``: one of minimax, non_saturating, wasserstein, hinge, least_squares."""
    return Objective(name)
