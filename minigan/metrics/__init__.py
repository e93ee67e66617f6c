"""Sample-quality metrics: mode coverage on 2-D mixtures, FID / IS / precision-recall on the
features of minigan's own MNIST classifier, stacked-MNIST modes; numpy only, no downloads."""
from .classifier import MnistClassifier, classifier_net
from .evaluate import better_sampler, evaluate, sampler_score, score_mnist_samples, summarize_draws
from .features import fid, frechet_distance, gaussian_stats, inception_score, kl_to_uniform, precision_recall
from .mixtures import mode_coverage

__all__ = ["MnistClassifier", "classifier_net", "better_sampler", "evaluate", "sampler_score", "score_mnist_samples",
           "summarize_draws", "fid", "frechet_distance", "gaussian_stats", "inception_score", "kl_to_uniform",
           "precision_recall", "mode_coverage"]
