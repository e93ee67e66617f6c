"""GAN-specific pieces built on the engine: objectives (and later the trainer and presets)."""
from .losses import OBJECTIVES, Objective, gan_objective

__all__ = ["OBJECTIVES", "Objective", "gan_objective"]
