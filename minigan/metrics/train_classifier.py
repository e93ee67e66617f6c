"""Train the MNIST evaluator (seeded, reproducible):

    python -m minigan.metrics.train_classifier --data-dir ../shared/data/mnist

With the 60k training set present it trains on it and reports accuracy on the 10k test set; with
only the 10k test set (as on the machines here) it trains on its first 8,000 digits and reports
accuracy on the last 2,000, which it never sees.  Random shifts of up to 2 pixels augment the data.
"""
import argparse
import json
import time

import numpy as np

from .. import checkpoint
from ..data import load_mnist
from ..ops.losses import softmax_cross_entropy
from ..optim import Adam, CosineAnnealingLR
from .classifier import WEIGHTS, classifier_net


def _scale(images):
    return (images.astype(np.float32) / 127.5 - 1)[:, None]


def _shift(x, rng, max_shift=2):
    """Random translation by up to ``max_shift`` pixels (background -1 fills the border)."""
    n = len(x)
    pad = np.pad(x, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)), constant_values=-1)
    dy, dx = rng.integers(0, 2 * max_shift + 1, (2, n))
    out = np.empty_like(x)
    for i in range(n):
        out[i] = pad[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
    return out


def accuracy(net, x, y, batch=500):
    hits = 0
    for i in range(0, len(x), batch):
        hits += int((net(x[i:i + batch]).argmax(axis=1) == y[i:i + batch]).sum())
    return hits / len(x)


def train(data_dir=None, epochs=15, seed=0, batch=128, lr=1e-3, log=print):
    images, labels, split = load_mnist(data_dir)
    if split == "train":
        test_images, test_labels, _ = load_mnist(data_dir, split="test")
        x_tr, y_tr, x_te, y_te = _scale(images), labels.astype(np.int64), _scale(test_images), test_labels.astype(np.int64)
        protocol = "trained on the 60k training set, accuracy on the 10k test set"
    else:
        x, y = _scale(images), labels.astype(np.int64)
        x_tr, y_tr, x_te, y_te = x[:8000], y[:8000], x[8000:], y[8000:]
        protocol = "trained on test-set digits 0..7999, accuracy on the held-out digits 8000..9999"
    rng = np.random.default_rng(seed)
    net = classifier_net(seed=seed)
    opt = Adam(lr)
    steps_per_epoch = len(x_tr) // batch
    sched = CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(x_tr))
        for s in range(steps_per_epoch):
            idx = order[s * batch:(s + 1) * batch]
            xb = _shift(x_tr[idx], rng)
            logits, tape = net.forward(xb, train=True)
            loss, dlogits = softmax_cross_entropy(logits, y_tr[idx])
            _, grads = net.backward(dlogits, tape)
            opt.step(net.parameters(), grads)
            sched.step()
        acc = accuracy(net, x_te, y_te)
        log(f"epoch {epoch + 1}/{epochs}: loss {float(loss):.4f}, held-out accuracy {acc:.4f} "
            f"({time.perf_counter() - t0:.0f} s)")
    meta = {"accuracy": acc, "protocol": protocol, "epochs": epochs, "seed": seed, "batch": batch, "lr": lr,
            "n_train": len(x_tr), "n_test": len(x_te)}
    return net, meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(WEIGHTS))
    args = ap.parse_args(argv)
    net, meta = train(args.data_dir, args.epochs, args.seed)
    checkpoint.save(args.out, {**net.state_dict(), "meta": json.dumps(meta)})
    print(f"wrote {args.out}: {json.dumps(meta)}")


if __name__ == "__main__":
    main()
