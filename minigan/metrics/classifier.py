"""The MNIST evaluator: a small CNN built from minigan's own layers, trained by
``python -m minigan.metrics.train_classifier`` (seeded, reproducible); its weights ship in the
package as ``mnist_classifier.npz``.  Its 128-d penultimate features define FID and
precision/recall; its class probabilities define the Inception-Score analogue and digit histograms."""
import json
from pathlib import Path

import numpy as np

from .. import nn
from ..backend import to_backend

WEIGHTS = Path(__file__).with_name("mnist_classifier.npz")
FEATURE_DIM = 128


def classifier_net(dtype=np.float32, seed=0):
    """28x28 digits in [-1, 1] -> 10 logits; layers 0..11 give the 128-d features."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.AvgPool2d(2),                                                                  # 14x14
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),                       # 7x7
        nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU(), nn.Dropout(0.3),     # features
        nn.Linear(FEATURE_DIM, 10), dtype=dtype, seed=seed)


N_FEATURE_LAYERS = 12


class MnistClassifier:
    """features(x) -> (N, 128), probs(x) -> (N, 10), predict(x) -> (N,), in eval mode, ``batch`` images a
    pass (128: numpy ran 3,000 images 1.5-1.8x faster than in passes of 500; the same features to the bit,
    the logits to the last bit or so: the inception score moves in its 9th digit)."""

    def __init__(self, path=WEIGHTS, backend="numpy", batch=128):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"classifier weights not found at {path}; train them with "
                                    "`python -m minigan.metrics.train_classifier --data-dir DIR`")
        with np.load(path, allow_pickle=False) as f:
            weights = {k: f[k] for k in f.files if not k.startswith("meta")}
            self.meta = json.loads(str(f["meta"])) if "meta" in f.files else {}
        self.net = classifier_net().to(backend)
        self.net.load_state_dict(weights)
        self.backend, self.batch = backend, batch

    def features_and_logits(self, x):
        """One pass: -> (penultimate features (N, 128), logits (N, 10)), float64 numpy."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"the MNIST classifier needs (N, 1, 28, 28) images in [-1, 1], got {x.shape}")
        lo, hi = (float(x.min()), float(x.max())) if x.size else (-1.0, 1.0)
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1.01 or hi > 1.01:
            raise ValueError(f"the MNIST classifier needs images in [-1, 1] (pixel / 127.5 - 1), got values in "
                             f"[{lo:.3g}, {hi:.3g}]")
        if len(x) >= 16 and lo >= 0:
            raise ValueError(f"these images lie in [{lo:.3g}, {hi:.3g}]: they look scaled to [0, 1], but the MNIST "
                             f"classifier needs [-1, 1] (background -1): pass 2 * x - 1")
        feats, logits = [np.zeros((0, FEATURE_DIM))], [np.zeros((0, 10))]
        for i in range(0, len(x), self.batch):
            h = to_backend(x[i:i + self.batch], self.backend)
            for j, layer in enumerate(self.net.layers):
                h, _ = layer.apply(self.net.params[str(j)], self.net.state[str(j)], h, False, None)
                if j + 1 == N_FEATURE_LAYERS:
                    feats.append(np.asarray(to_backend(h, "numpy"), dtype=np.float64))
            logits.append(np.asarray(to_backend(h, "numpy"), dtype=np.float64))
        return np.concatenate(feats), np.concatenate(logits)

    def features(self, x):
        return self.features_and_logits(x)[0]

    def logits(self, x):
        return self.features_and_logits(x)[1]

    def probs(self, x):
        return softmax(self.logits(x))

    def predict(self, x):
        return self.logits(x).argmax(axis=1)


def softmax(z):
    """Row-wise softmax of logits (N, K), without overflow."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
