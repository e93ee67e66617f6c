"""GAN-specific pieces built on the engine: objectives, presets and the trainer."""
from .losses import OBJECTIVES, Objective, gan_objective
from .penalties import r1_penalty, wgan_gp_penalty
from .models import DEFAULT_RECIPE, PRESETS, build_nets, recipe_for
from .trainer import CheckpointError, Trainer, TrainingDiverged

__all__ = ["OBJECTIVES", "Objective", "gan_objective", "DEFAULT_RECIPE", "PRESETS", "build_nets", "recipe_for",
           "Trainer", "TrainingDiverged", "CheckpointError",
           "r1_penalty", "wgan_gp_penalty"]
