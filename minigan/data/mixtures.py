"""2-D Gaussian mixtures of the PacGAN / VEEGAN benchmarks (Lin et al. 2018, Srivastava et al. 2017)."""
import math

import numpy as np


class GaussianMixture:
    """Equal-weight isotropic Gaussians at ``centers`` (K, 2) with standard deviation ``std``."""

    def __init__(self, name, centers, std):
        self.name = name
        self.centers = np.asarray(centers, dtype=np.float64)
        self.std = float(std)

    def __repr__(self):
        return f"GaussianMixture({self.name!r}, {len(self.centers)} modes, std={self.std})"

    def sample(self, n, rng):
        """(n, 2) float64 samples and their mode indices, drawn from the numpy Generator ``rng``."""
        modes = rng.integers(0, len(self.centers), size=n)
        return self.centers[modes] + self.std * rng.standard_normal((n, 2)), modes


def ring8():
    """8 modes on the unit circle at angles 2 pi i / 8, std 0.01."""
    angles = 2 * math.pi * np.arange(8) / 8
    return GaussianMixture("ring8", np.stack([np.cos(angles), np.sin(angles)], axis=1), 0.01)


def grid25():
    """25 modes on the grid {-4, -2, 0, 2, 4}^2, std 0.05."""
    g = np.arange(-4.0, 5.0, 2.0)
    return GaussianMixture("grid25", np.array([(x, y) for x in g for y in g]), 0.05)


MIXTURES = {"ring8": ring8, "grid25": grid25}
