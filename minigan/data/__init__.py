"""Data: 2-D Gaussian mixtures (ring8, grid25), MNIST (IDX reader, checked download), stacked MNIST."""
from .mixtures import MIXTURES, GaussianMixture, grid25, ring8
from .mnist import (DataError, MNIST_FILES, download_mnist, find_mnist, load_mnist, read_idx,
                    stacked_mnist)

__all__ = ["MIXTURES", "GaussianMixture", "grid25", "ring8", "DataError", "MNIST_FILES", "download_mnist",
           "find_mnist", "load_mnist", "read_idx", "stacked_mnist"]
