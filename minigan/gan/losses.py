"""GAN objectives on discriminator logits: each returns the loss (a 0-d array) and its gradients.

With r, f the logits on real and fake samples, σ the sigmoid, softplus(x) = log(1 + e^x)
(so -log σ(x) = softplus(-x) and -log(1 - σ(x)) = softplus(x)), and means over the batch:

  objective        D loss                                    G loss
  minimax          -mean log σ(r) - mean log(1 - σ(f))        mean log(1 - σ(f))     Goodfellow et al. 2014
  non_saturating   same as minimax                            -mean log σ(f)         Goodfellow et al. 2014
  wasserstein      mean f - mean r                            -mean f                Arjovsky et al. 2017
  hinge            mean relu(1 - r) + mean relu(1 + f)        -mean f                Lim & Ye 2017
  least_squares    1/2 mean (r - 1)^2 + 1/2 mean f^2          1/2 mean (f - 1)^2     Mao et al. 2017

Each gradient is written out next to its loss below; ``n`` is the number of logits.
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


OBJECTIVES = ("minimax", "non_saturating", "wasserstein", "hinge", "least_squares")


def gan_objective(name):
    """The objective called ``name``: one of minimax, non_saturating, wasserstein, hinge, least_squares."""
    return Objective(name)
