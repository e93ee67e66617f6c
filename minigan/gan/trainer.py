"""The GAN trainer: alternating D and G updates (design.md's step), exact resume from one .npz.

    t = Trainer("ring8", seed=0, out_dir="runs/ring8")
    t.run()                          # to recipe["steps"]; writes checkpoint.npz, log.jsonl, samples.png
    t = Trainer.resume("runs/ring8") # the same run, bit for bit, from its checkpoint
    t.run(steps=6000)
    t = Trainer(G=my_G, D=my_D, data=my_array_or_sampler, z_dim=16, steps=3000, penalty="r1")   # your own GAN

Every random draw (data, z, dropout masks) comes from numpy Generators whose states are saved, so
the same seed on the same backend gives the same run, and a resumed run continues identically.
"""
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from .. import checkpoint, optim, parallel
from ..nn import walk
from ..nn.norm import _BatchNorm
from ..backend import asnumpy, get_backend, get_xp, to_backend
from ..data import MIXTURES, load_mnist, stacked_mnist
from ..viz import grid_figure, samples_figure
from ..ops.activations import sigmoid
from .augment import augment, augment_adjoint, draw_params, parse_augment
from .losses import gan_objective
from .models import DEFAULT_RECIPE, NORMED, SIZED, build_nets, legacy_recipe, recipe_for
from .penalties import r1_penalty, wgan_gp_penalty
from .truncation import check_truncate, jacobian_norms_in_chunks, truncated_sample, truncation_threshold

CHECKPOINT, LOG, SAMPLES, CONFIG = "checkpoint.npz", "log.jsonl", "samples.png", "config.json"


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN/Inf; the last good checkpoint is kept."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here (missing, another preset, not a minigan run)."""


def _rng_state(rng):
    return rng.bit_generator.state


def _set_rng_state(rng, state):
    rng.bit_generator.state = state


CUSTOM = "custom"
# Jacobian truncation's threshold is a quantile of ||dG/dz||_F over this fixed noise (in chunks, for memory)
CALIBRATION_SEED, CALIBRATION_SAMPLES, CALIBRATION_CHUNK = 2**31 - 2, 10000, 2500
SELECT_SEED = 2**31 - 1       # the noise choose_sampler measures with (evaluate's default is seed 0)
STANDING_SEED = 2**31 - 3     # the noise the EMA of G's BatchNorm statistics are measured on
# sample() runs G on at most this many inputs at once (stacked MNIST's 26,000 through dcgan's G at once took
# more than 24 GB); any other G than a 2-D mixture's on IMAGE_CHUNK: a conv G's activations for 1,000 samples
# are 100-200 MB each, which numpy ran 1.5-2.6x slower than chunks of 128 (the same samples to the bit; a
# mixture's MLP is as fast either way, and its chunks change its samples in the last bit)
SAMPLE_CHUNK = 1000
IMAGE_CHUNK = 128


def _record(log, rec):
    """Append one JSON record to the run's open log.jsonl (None: the run writes no files)."""
    if log is not None:
        log.write(json.dumps(rec) + "\n")


def _custom_recipe(G, D, z_dim, overrides):
    """DEFAULT_RECIPE with ``overrides`` for a GAN built from the user's own nets and data."""
    from .models import DEFAULT_RECIPE, check_keys, check_recipe
    for name, net in (("G", G), ("D", D)):
        if not all(callable(getattr(net, m, None)) for m in ("forward", "backward", "parameters", "state_dict")):
            raise TypeError(f"Trainer: {name} must be a minigan.Sequential (forward/backward/parameters), "
                            f"got {type(net).__name__}")
    if G.dtype != D.dtype:
        raise ValueError(f"Trainer: G computes in {G.dtype} but D in {D.dtype}; build both with one dtype")
    if not (isinstance(z_dim, (int, np.integer)) and z_dim >= 1):
        raise ValueError(f"Trainer: z_dim must be a positive int (the size of G's noise input), got {z_dim!r}")
    check_keys(overrides)
    for key in ("data", "conditional", "init", "spectral_norm", "d_dropout", *SIZED, *NORMED):
        if key in overrides and overrides[key] != DEFAULT_RECIPE[key]:
            raise ValueError(f"Trainer: recipe key {key!r} builds a preset's nets or data; with your own G, D "
                             f"and data, put it in them instead")
    for key in ("eval_every", "select_samples"):     # (evaluate needs your features to score your own GAN)
        if overrides.get(key):
            raise ValueError(f"Trainer: recipe key {key!r} scores a preset's samples with its own metrics; score "
                             f"your own GAN with minigan.metrics.evaluate(trainer, features=...) (expected {key} 0, "
                             f"got {overrides[key]!r})")
    recipe = {**DEFAULT_RECIPE, **overrides, "data": CUSTOM, "z_dim": int(z_dim), "dtype": str(G.dtype)}
    check_recipe(recipe)
    return recipe


class Trainer:
    """Alternating D and G updates with EMA, exact resume, logs, pictures, penalties and evaluation,
    for a preset (``Trainer("dcgan-mnist", ...)``) or for your own parts:
    ``Trainer(G=..., D=..., data=..., z_dim=..., **recipe)`` with two ``minigan.Sequential`` nets and
    ``data`` an array of samples (N, ...) or a callable ``sample(n, rng) -> array`` (rng: a numpy
    Generator, the trainer's own, so that runs are reproducible and resume exactly)."""

    def __init__(self, preset=None, seed=0, backend=None, out_dir=None, data_dir=None, *, G=None, D=None,
                 data=None, z_dim=None, **overrides):
        if isinstance(data, str):                 # the recipe key "data" (a preset's dataset name)
            overrides["data"], data = data, None
        custom = G is not None or D is not None or data is not None
        if custom:
            if G is None or D is None or data is None:
                raise ValueError("Trainer: your own GAN needs all of G, D and data (and z_dim)")
            if preset is not None:
                raise ValueError(f"Trainer: give either a preset ({preset!r}) or your own G, D and data, not both")
            self.recipe, preset = _custom_recipe(G, D, z_dim, overrides), CUSTOM
        else:
            preset = "ring8" if preset is None else preset
            if z_dim is not None:                 # (a preset's z_dim is a recipe key like any other)
                overrides["z_dim"] = z_dim
            self.recipe = recipe_for(preset, **overrides)
        self.preset, self.seed = preset, int(seed)
        self.backend = backend or get_backend()
        self.comm = parallel.world()                # K ranks under mpiexec, else None (mpi4py not imported)
        if self.comm is not None and self.backend == "cupy":
            self.comm.use_gpu()                     # this rank's device, before any array is made on it
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.data_dir = data_dir
        r = self.recipe
        self.G, self.D = (G, D) if custom else build_nets(preset, r, self.seed)
        self.user_data = data
        self.G.to(self.backend)
        self.D.to(self.backend)
        self._setup_parallel()                # (before the EMA copies G: every rank starts from rank 0's)
        self.objective = gan_objective(r["objective"])
        self.opt_g = optim.Adam(r["lr_g"], tuple(r["betas_g"]), weight_decay=r["l2"])
        self.opt_d = optim.Adam(r["lr_d"], tuple(r["betas_d"]), weight_decay=r["l2"])
        self.schedules = [self._schedule(o) for o in (self.opt_g, self.opt_d)]
        self.ema = {k: v.copy() for k, v in self.G.parameters().items()} if r["ema"] else None
        self._ema_net = None                  # sampling_net's G with the EMA weights, built on first use
        # the generator samples come from: "ema" or "raw" (the EMA, if any, until a measurement says
        # the raw G is better: choose_sampler)
        self.sampler = "ema" if self.ema is not None else "raw"
        self.measured = None                  # choose_sampler's last evaluate() result
        self._peak_hq = {}                    # sampler -> (step, best high-quality fraction so far)
        self.rng = np.random.default_rng(np.random.SeedSequence(self.seed).spawn(1)[0])
        self.step = 0
        self.dtype = np.dtype(r["dtype"])
        self._load_data()

    # ---------------------------------------------------------------- set-up
    def _schedule(self, opt):
        kind, r = self.recipe["lr_schedule"], self.recipe
        if kind == "constant":
            return None
        if kind == "cosine":
            return optim.CosineAnnealingLR(opt, T_max=int(r["steps"]))
        if kind == "exponential":
            return optim.ExponentialLR(opt, r["lr_gamma"])
        raise ValueError(f"unknown lr_schedule {kind!r}; expected constant, cosine or exponential")

    def _load_data(self):
        kind = self.recipe["data"]
        xp = get_xp(*self.G.parameters().values())
        if kind == CUSTOM:
            self.mixture = self.images = self.labels = None
            if not callable(self.user_data):
                a = self.user_data
                if not hasattr(a, "shape") or a.ndim < 2 or len(a) < 1:
                    raise ValueError(f"Trainer: data must be an array of samples (N, ...) with N >= 1, or a callable "
                                     f"sample(n, rng); got {getattr(a, 'shape', type(a).__name__)}")
                self.images = xp.asarray(np.asarray(to_backend(a, "numpy"), dtype=self.dtype))
            return
        if kind in MIXTURES:
            self.mixture, self.images, self.labels = MIXTURES[kind](), None, None
            return
        if kind not in ("mnist", "stacked-mnist"):
            raise ValueError(f"unknown data {kind!r}")
        images, labels, self.split = load_mnist(self.data_dir)
        self.mixture = None
        self.host_images, self.host_labels = images, labels          # uint8, for evaluation
        self.images = xp.asarray((images.astype(np.float32) / 127.5 - 1).astype(self.dtype)[:, None])  # [-1, 1]
        self.labels = labels.astype(np.int64)

    def _real_batch(self, n):
        """-> (real batch on the backend, labels (host int64) or None)."""
        if self.recipe["data"] == CUSTOM:
            if self.images is not None:
                return self.images[self.rng.integers(0, len(self.images), size=n)], None
            x = self.user_data(n, self.rng)
            if not hasattr(x, "shape") or len(x) != n:
                raise ValueError(f"Trainer: data(n, rng) must return an array of n samples; asked for {n}, got "
                                 f"{getattr(x, 'shape', type(x).__name__)}")
            return to_backend(np.asarray(to_backend(x, "numpy"), dtype=self.dtype), self.backend), None
        if self.mixture is not None:
            x, _ = self.mixture.sample(n, self.rng)
            return to_backend(x.astype(self.dtype), self.backend), None
        if self.recipe["data"] == "stacked-mnist":
            x, _ = stacked_mnist(self.host_images, self.host_labels, n, self.rng)
            return to_backend((x.astype(np.float32) / 127.5 - 1).astype(self.dtype), self.backend), None
        idx = self.rng.integers(0, len(self.labels), size=n)
        return self.images[idx], self.labels[idx]

    def _z(self, n):
        return to_backend(self.rng.standard_normal((n, self.recipe["z_dim"])).astype(self.dtype), self.backend)

    def _onehot(self, labels):
        return to_backend(np.eye(10, dtype=self.dtype)[labels], self.backend)

    def _g_input(self, z, labels):
        if not self.recipe["conditional"]:
            return z
        return get_xp(z).concatenate([z, self._onehot(labels)], axis=1)

    def _d_input(self, x, labels):
        """What D sees: x itself; with PacGAN packing m consecutive samples joined along axis 1
        (features or channels), a reshape, so D's input gradient reshapes straight back; with a
        condition, x flattened and joined with the one-hot label."""
        pack = self.recipe["pack"]
        if pack > 1:
            return x.reshape((len(x) // pack, pack * x.shape[1]) + x.shape[2:])
        if not self.recipe["conditional"]:
            return x
        return get_xp(x).concatenate([x.reshape(len(x), -1), self._onehot(labels)], axis=1)

    # ---------------------------------------------------------------- one step
    def train_step(self):
        """n_critic D updates, then one G update through the updated D (design.md).  -> log record."""
        r, G, D, obj = self.recipe, self.G, self.D, self.objective
        t0 = time.perf_counter()
        penalty = None
        for k in range(r["n_critic"]):
            real, labels = self._real_batch(r["batch_size"])
            if labels is None and r["conditional"]:
                raise ValueError("a conditional preset needs labelled data")
            z = self._z(r["batch_size"])
            real, labels, z = self._mine(real), self._mine(labels), self._mine(z)     # K ranks: this rank's slice
            fake, g_tape = G.forward(self._g_input(z, labels), train=True, rng=self._rng_of(G))
            aug_r, aug_f = self._augment_params(real), self._augment_params(fake)     # (None: no augment)
            d_real, d_fake = self._d_input(augment(real, aug_r), labels), self._d_input(augment(fake, aug_f), labels)
            logit_r, tape_r = D.forward(d_real, train=True, rng=self._rng_of(D))
            logit_f, tape_f = D.forward(d_fake, train=True, rng=self._rng_of(D))
            loss_d, dlogit_r, dlogit_f = obj.d_loss(logit_r, logit_f)
            # free_tape: each cache is released as soon as it is used (as torch frees its graph)
            lazy = r["penalty"] != "none" and (self.step * r["n_critic"] + k) % r["penalty_every"] == 0
            # (R1 differentiates the reals' forward again: that tape is kept for it)
            _, gD = D.backward(dlogit_r, tape_r, input_grad=False, free_tape=not (lazy and r["penalty"] == "r1"))
            _, gD = D.backward(dlogit_f, tape_f, grads=gD, input_grad=False, free_tape=True)
            if lazy:
                penalty, gP = self._penalty(d_real, d_fake, tape_r)
                loss_d = loss_d + penalty
                for name, g in gP.items():
                    gD[name] += g
            if self.comm is not None:          # one Allreduce of all of D's gradients; the global mean loss
                self.comm.average(gD)
                loss_d = self.comm.mean_scalars([float(loss_d)])[0]
            norm_d = self._finish_grads("D", D, gD, loss_d)
            self.opt_d.step(D.parameters(), gD)
            if r["weight_clip"]:
                optim.clip_grad_value(D.parameters(), r["weight_clip"])
        aug_g = self._augment_params(fake)
        logit_g, tape_g = D.forward(self._d_input(augment(fake, aug_g), labels), train=True, rng=self._rng_of(D))
        loss_g, dlogit_g = self._g_loss(logit_g)
        dfake, _ = D.backward(dlogit_g, tape_g, param_grads=False, free_tape=True)
        if r["conditional"]:
            dfake = dfake[:, :-10]
        dfake = augment_adjoint(dfake.reshape(fake.shape), aug_g)     # back through the augmentation: T^T
        _, gG = G.backward(dfake, g_tape, input_grad=False, free_tape=True)   # none for z
        if self.comm is not None:
            self.comm.average(gG)
            loss_g = self.comm.mean_scalars([float(loss_g)])[0]
        norm_g = self._finish_grads("G", G, gG, loss_g)
        self.opt_g.step(G.parameters(), gG)
        for s in self.schedules:
            if s is not None:
                s.step()
        if self.ema is not None:
            # warm-up (as tf.train.ExponentialMovingAverage with num_updates): early on the average
            # must not keep the initial weights, which a plain decay of 0.999 would for ~5000 steps
            decay = min(r["ema"], (1 + self.step) / (10 + self.step))
            for k, p in G.parameters().items():
                self.ema[k] *= decay
                self.ema[k] += (1 - decay) * p
        self.step += 1
        squash = obj.name in ("minimax", "non_saturating")       # D(x) is then sigma(logit), a probability
        mean_out = (lambda a: float(sigmoid(a).mean())) if squash else (lambda a: float(a.mean()))
        d_out = [mean_out(logit_r), mean_out(logit_f)] + ([] if penalty is None else [float(penalty)])
        if self.comm is not None:             # equal slices: the mean of the ranks' means is the global mean
            d_out = self.comm.mean_scalars(d_out)
        rec = {"step": self.step, "loss_d": float(loss_d), "loss_g": float(loss_g),
               "d_real": d_out[0], "d_fake": d_out[1],
               "grad_norm_d": norm_d, "grad_norm_g": norm_g, "time": time.perf_counter() - t0}
        if penalty is not None:
            rec["penalty"] = d_out[2]                # the last D step's that had one (in loss_d too)
        return rec

    def _g_loss(self, logit):
        """-> (loss, dlogit) of G's objective.  Top-k training (recipe ``topk`` < 1; Sinha et al. 2020): only the
        k = max(1, round(topk * N)) fakes of the global batch (N logits; ties to the lower index) that D rates
        most real, those of the largest logits, enter G's loss; with l the objective's per-logit G term,
            L = 1/k sum_{i in top k} l(f_i),     dL/df_i = l'(f_i) / k on the top k, 0 on the rest.
        With K ranks the logits are gathered (one Allreduce of N numbers), every rank picks the same top k,
        and a rank holding m of them scales the objective's mean over its m (value and gradient 1/m) by
        m K / k: the ranks' average, which the trainer takes, is then L and its gradient."""
        topk, obj = self.recipe["topk"], self.objective
        if topk >= 1:
            return obj.g_loss(logit)
        xp, flat = get_xp(logit), logit.reshape(-1)
        n = flat.size
        ranks = self._ranks
        every = np.zeros(n * ranks)            # each rank's logits in its slice (_mine), zeros elsewhere; summed
        self._mine(every)[:] = asnumpy(flat)
        if self.comm is not None:
            every = self.comm.allreduce(every)
        k = max(1, int(round(topk * n * ranks)))
        keep = np.zeros(n * ranks, dtype=bool)
        keep[np.argsort(-every, kind="stable")[:k]] = True
        idx = np.flatnonzero(self._mine(keep))
        dlogit = xp.zeros_like(flat)
        if not len(idx):                       # none of the top k on this rank: it adds nothing
            return xp.zeros((), dtype=flat.dtype), dlogit.reshape(logit.shape)
        idx = xp.asarray(idx)
        loss, d = obj.g_loss(flat[idx])
        scale = flat.dtype.type(len(idx) * ranks / k)      # 1 with one process (m = k)
        dlogit[idx] = d * scale
        return loss * scale, dlogit.reshape(logit.shape)

    def _augment_params(self, x):
        """DiffAugment's random transforms (recipe ``augment``; gan.augment) for this rank's batch ``x``: drawn
        for the global batch from the trainer's generator and sliced, so K ranks transform as one process
        does.  None (and no draw) when the recipe does not augment."""
        kinds = parse_augment(self.recipe["augment"])
        if not kinds:
            return None
        params = draw_params(kinds, len(x) * self._ranks, x.shape[1:], self.rng)       # the global batch's
        return {key: self._mine(v) for key, v in params.items()}

    def _penalty(self, d_real, d_fake, tape_real):
        """-> (value, grads) of the recipe's gradient penalty on D's inputs (exact, by one tangent pass;
        minigan.gan.penalties), its weight multiplied by penalty_every (lazy regularisation)."""
        r = self.recipe
        weight = r["penalty_weight"] * r["penalty_every"]
        if r["penalty"] == "wgan_gp":
            alpha = self._mine(self.rng.random(len(d_real) * self._ranks))     # drawn for the global batch, sliced
            return wgan_gp_penalty(self.D, d_real, d_fake, weight, alpha=alpha, dropout_rng=self._rng_of(self.D))
        if r["penalty"] == "r1":
            return r1_penalty(self.D, d_real, weight, tape=tape_real)
        # (a forward of its own: with K ranks its dropout masks are the global batch's, sliced, as the D step's)
        return r1_penalty(self.D, d_fake, weight, rng=self._rng_of(self.D))

    @property
    def _ranks(self):
        """The number of data-parallel ranks: 1 in one process."""
        return 1 if self.comm is None else self.comm.size

    def _mine(self, a):
        """This rank's slice (axis 0) of a global-batch array; the array itself in one process."""
        if self.comm is None or a is None:
            return a
        m = len(a) // self.comm.size
        return a[self.comm.rank * m:(self.comm.rank + 1) * m]

    def _rng_of(self, net):
        """The generator a net's dropout masks come from: with K ranks, the global batch's masks, sliced."""
        if self.comm is None:
            return None
        return parallel.SliceRNG(net.rng, self.comm.rank, self.comm.size)

    def _setup_parallel(self):
        """Under mpiexec with K > 1 ranks (minigan.parallel): check the recipe fits K before any
        work, start every rank from rank 0's parameters, and make BatchNorm's statistics global."""
        if self.comm is None:
            return
        r, k = self.recipe, self.comm.size
        if r["batch_size"] % k or (r["batch_size"] // k) % r["pack"]:
            raise ValueError(f"batch_size {r['batch_size']} must split into {k} equal per-rank batches "
                             f"(each divisible by pack={r['pack']}) for {k} ranks")
        if r["penalty"] != "none" and any(isinstance(m, _BatchNorm) for m in walk(self.D)):
            raise ValueError("a gradient penalty through a BatchNorm critic is not data-parallel yet (its tangent "
                             "would use per-rank statistics); run it on one process, or without the penalty "
                             "(penalty='none'; --penalty none)")
        self.comm.broadcast_arrays(self.G.parameters())
        self.comm.broadcast_arrays(self.D.parameters())
        parallel.sync(self.comm)

    @property
    def writer(self):
        """Whether this process writes the run's files (rank 0 of K, or a single process)."""
        return self.out_dir is not None and (self.comm is None or self.comm.rank == 0)

    def _finish_grads(self, name, net, grads, loss):
        """L1, clipping and the NaN/Inf guard (before any parameter changes); -> gradient norm."""
        r = self.recipe
        if r["l1"]:
            optim.l1_regularization(net.parameters(), r["l1"], grads)
        norm = optim.global_norm(grads.values())
        if not (math.isfinite(float(loss)) and math.isfinite(norm)):
            what = "loss" if not math.isfinite(float(loss)) else "gradient"
            raise TrainingDiverged(f"step {self.step + 1}: non-finite {what} in {name} "
                                   f"(loss {float(loss)}, gradient norm {norm}); the last checkpoint is kept")
        if r["grad_clip"]:
            optim.clip_grad_norm(grads, r["grad_clip"])
        return norm

    # ---------------------------------------------------------------- the loop
    def run(self, steps=None, progress=True):
        """Train until ``steps`` total steps (default: the recipe's); log, sample and checkpoint (rank 0
        alone when data-parallel; an exception on any rank then stops every rank)."""
        try:
            return self._run(steps, progress)
        except Exception as e:
            if self.comm is not None:
                self.comm.abort(e)
            raise

    def _run(self, steps, progress):
        total = int(self.recipe["steps"] if steps is None else steps)
        r = self.recipe
        lead = self.comm is None or self.comm.rank == 0           # prints, evaluates, writes
        bar = _Progress(total, self.step) if progress and lead else None
        log = None
        if self.writer:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.write_config()
            log = open(self.out_dir / LOG, "a")
        try:
            while self.step < total:
                rec = self.train_step()
                _record(log, rec)
                if bar is not None:
                    bar.update(rec)
                if r["eval_every"] and self.step % r["eval_every"] == 0 and lead:
                    self._evaluate_in_training(log)
                if self.writer:
                    if r["sample_every"] and self.step % r["sample_every"] == 0 and self.step < total:
                        (self.out_dir / "samples").mkdir(exist_ok=True)
                        self.write_samples(self.out_dir / "samples" / f"step_{self.step:07d}.png")
                    if r["checkpoint_every"] and self.step % r["checkpoint_every"] == 0:
                        log.flush()
                        self.save()
            if lead and r["select_samples"] and (self.ema is not None or self.mixture is not None):
                # the run's last word on its sampler: the EMA or the raw G, whichever measures better on
                # select_samples fresh samples each (a mixture's G alone is measured too: for the warning)
                chosen = self.choose_sampler(n=r["select_samples"], log=log)
                if self.mixture is not None and chosen["hq_fraction"] == 0:
                    self._warn(log, f"step {self.step}: no sample lies near any mode at the end of training (high-"
                                    f"quality fraction 0{' for the EMA and the raw G' if self.ema is not None else ''})")
        finally:
            if log is not None:
                log.close()
            if bar is not None:
                bar.close()
        if self.writer:
            self.save()
            self.write_samples(self.out_dir / SAMPLES)
        return self

    def _evaluate_in_training(self, log):
        """An evaluation every eval_every steps: both samplers side by side in the log, the sampler
        chosen by it, and a warning when a sampler's high-quality fraction (mixtures) falls to 0."""
        from ..metrics import better_sampler, evaluate       # (the metrics need the trainer; import late)
        result = evaluate(self, n=self.recipe["eval_samples"])
        self.sampler = better_sampler(result)
        _record(log, {"step": self.step, "eval": result, "sampler": self.sampler})
        for name, m in ([("EMA of G", result["ema_g"]), ("raw G", result["raw_g"])] if "ema_g" in result
                        else [("G", result)]):
            if "hq_fraction" not in m:
                continue
            peak = self._peak_hq.get(name)          # (step, fraction) of its best evaluation so far
            if m["hq_fraction"] == 0 and peak is not None and peak[1] > 0:
                self._warn(log, f"step {self.step}: the {name}'s high-quality fraction fell to 0 (it was "
                                f"{100 * peak[1]:.1f} % at step {peak[0]}): no sample lies near any mode; "
                                f"training has collapsed or diverged")
            if peak is None or m["hq_fraction"] > peak[1]:
                self._peak_hq[name] = (self.step, m["hq_fraction"])

    def _warn(self, log, warning):
        print(f"\nminigan: warning: {warning}", file=sys.stderr, flush=True)
        _record(log, {"step": self.step, "warning": warning})

    def choose_sampler(self, n=None, seed=SELECT_SEED, log=None):
        """Measure the EMA of G and the raw G side by side (metrics.evaluate on ``n`` samples of noise
        from ``seed``, not the noise `minigan eval` scores with; by default the recipe's select_samples,
        evaluate's own default where that is 0) and sample from the better one from now on
        (metrics.better_sampler); the choice is saved with the checkpoint.  ``log``: an open text file
        (log.jsonl) to append the measurement to.  -> the evaluate() result."""
        from ..metrics import better_sampler, evaluate
        if n is None and self.recipe["select_samples"]:
            n = self.recipe["select_samples"]
        result = evaluate(self, n=n, seed=seed)
        self.sampler, self.measured = better_sampler(result), result
        _record(log, {"step": self.step, "sampler": self.sampler,
                      "measured": {k: result[k] for k in ("ema_g", "raw_g") if k in result}})
        return result

    # ---------------------------------------------------------------- sampling
    def sampling_net(self):
        """G with the EMA weights (if any), for eval-mode sampling.  Its BatchNorm statistics are its
        own (standing_statistics, recipe ``ema_bn_batches``), or the raw G's when that is 0.  With EMA,
        one net is built on the first call and refilled from G and the EMA on each call."""
        if self.ema is None:
            return self.G
        if self._ema_net is None:
            G = self.G if self.preset == CUSTOM else build_nets(self.preset, self.recipe, self.seed)[0]
            self._ema_net = type(self.G)(*G.layers, dtype=self.G.dtype).to(self.backend)
        self._ema_net.load_state_dict({**self.G.state_dict(), **self.ema})
        if self.recipe["ema_bn_batches"]:
            self.standing_statistics(self._ema_net, self.recipe["ema_bn_batches"])
        return self._ema_net

    def standing_statistics(self, net, batches):
        """Set the running statistics of every BatchNorm in ``net`` to those of its own weights
        ("standing statistics", Brock et al. 2019, BigGAN): over ``batches`` batches of fixed noise
        (batch_size each, STANDING_SEED) through ``net`` in training mode,

            running_mean = (1/K) sum_k mean_k(x),   running_var = (1/K) sum_k var_k(x)  (unbiased),

        each layer's batch statistics under the statistics of the layers before it.  G's running
        statistics are averages over past raw weights; the EMA of the weights is another net, whose
        activations have other means and variances.  A net without BatchNorm is left as it is."""
        norms = [m for m in walk(net) if isinstance(m, _BatchNorm) and m.track_running_stats]
        if not norms:
            return net
        for k, v in net.buffers().items():        # (live arrays: a fresh start of the averages)
            v[...] = 1 if k.endswith("running_var") else 0
        rng = np.random.default_rng(STANDING_SEED)
        n = self.recipe["batch_size"]
        momenta, synced = [m.momentum for m in norms], parallel.synced()
        try:
            parallel.sync(None)                   # (this rank's own: the noise is the same on every rank)
            for m in norms:
                m.momentum = None                 # a cumulative average, as torch's momentum=None
            for _ in range(batches):
                z = to_backend(rng.standard_normal((n, self.recipe["z_dim"])).astype(self.dtype), self.backend)
                net.forward(self._g_input(z, np.arange(n) % 10), train=True, rng=rng)
        finally:
            parallel.sync(synced)
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
        return net

    def sample(self, n, labels=None, seed=None, ema=None, truncate=None):
        """n samples (host numpy) in eval mode from the run's sampler (``self.sampler``: its EMA of G
        or the raw G, chosen by measurement); ``ema=True`` / ``False`` asks for the EMA / the raw G
        whatever the choice.  Noise from ``seed`` (a fixed seed by default, so that successive
        pictures show the same z).  ``truncate``: the fraction q of the noise that Jacobian truncation
        rejects (gan.truncation: a z where ||dG/dz||_F exceeds the (1 - q) quantile of it over fixed
        calibration noise is redrawn; the others are the untruncated sampler's own); None: the
        recipe's ``truncate``, 0: off."""
        q = self._truncate(truncate)
        rng = np.random.default_rng(12345 if seed is None else seed)
        if self.recipe["conditional"]:
            labels = np.arange(n) % 10 if labels is None else np.broadcast_to(np.asarray(labels), (n,))
        elif labels is not None:
            raise ValueError(f"preset {self.preset!r} is not conditional: it cannot sample a given label")
        if ema is None:
            ema = self.sampler == "ema"
        if ema and self.ema is None:
            raise ValueError("this run keeps no EMA of G (recipe ema=0): sample from the raw G (ema=False)")
        net = self._net(ema)
        chunk = SAMPLE_CHUNK if self.mixture is not None else IMAGE_CHUNK

        def draw(idx):                  # the inputs of positions idx (their labels fixed), fresh noise
            z = to_backend(rng.standard_normal((len(idx), self.recipe["z_dim"])).astype(self.dtype), self.backend)
            return self._g_input(z, labels[idx]) if self.recipe["conditional"] else z
        if q:
            out = to_backend(truncated_sample(net, draw, n, self._threshold(net, q), n_inputs=self.recipe["z_dim"],
                                              chunk=chunk), "numpy")
        else:                           # all the noise at once (the same draws for any n), G in chunks: memory
            x = draw(np.arange(n))
            out = np.concatenate([to_backend(net(x[lo:lo + chunk]), "numpy") for lo in range(0, max(n, 1), chunk)])
        return np.asarray(out, dtype=np.float64)

    def truncation_threshold(self, q=None, ema=None):
        """tau of Jacobian truncation for the EMA (``ema=True``) or the raw G (default: the run's
        sampler): the (1 - q) quantile of ||dG/dz||_F over CALIBRATION_SAMPLES of fixed noise (the
        recipe's ``truncate`` by default)."""
        return self._threshold(self._net(self.sampler == "ema" if ema is None else ema), self._truncate(q))

    def _threshold(self, net, q):
        """truncation_threshold of ``net`` (sample() passes the net it already holds: the EMA net is
        refilled and its BatchNorm statistics measured once per call)."""
        rng = np.random.default_rng(CALIBRATION_SEED)
        z = rng.standard_normal((CALIBRATION_SAMPLES, self.recipe["z_dim"])).astype(self.dtype)
        x = to_backend(z, self.backend)
        if self.recipe["conditional"]:
            x = self._g_input(x, np.arange(CALIBRATION_SAMPLES) % 10)
        norms = jacobian_norms_in_chunks(net, x, self.recipe["z_dim"], CALIBRATION_CHUNK)[1]
        return truncation_threshold(norms, q)

    def _truncate(self, truncate):
        """The fraction Jacobian truncation rejects: the recipe's for None, else ``truncate`` checked."""
        return self.recipe["truncate"] if truncate is None else check_truncate(truncate)

    def _net(self, ema):
        """The net a sampler draws from: the EMA of G (sampling_net) or the raw G."""
        return self.sampling_net() if ema else self.G

    def real_samples(self, n, seed=0):
        """n real samples (host numpy) drawn with their own generator: the run's rng does not move."""
        run_rng = self.rng
        self.rng = np.random.default_rng(seed)
        try:
            return np.asarray(to_backend(self._real_batch(n)[0], "numpy"), dtype=np.float64)
        finally:
            self.rng = run_rng

    def write_samples(self, path, n=None, labels=None, seed=None, truncate=None):
        """A picture of samples: points over the true modes for 2-D data, a grid for images
        (N, 1 or 3, H, W); other custom data gets no picture (returns None).  ``truncate``: as sample's."""
        sampler = {"ema": "EMA of G", "raw": "raw G" if self.ema is not None else "G"}[self.sampler]
        q = self._truncate(truncate)
        sampler += f" (Jacobian truncation {q:g})" if q else ""
        if self.mixture is not None:
            x = self.sample(n or 2500, seed=seed, truncate=q)
            return samples_figure(path, x, self.mixture.centers, f"{self.preset}, step {self.step}: {len(x)} samples "
                                                                 f"of the {sampler} vs the true modes")
        x = self.sample(n or (2500 if self.preset == CUSTOM else 64), labels, seed=seed, truncate=q)
        if x.ndim == 2 and x.shape[1] == 2:
            return samples_figure(path, x, None, f"{self.preset}, step {self.step}: {len(x)} samples of the {sampler}",
                                  real=self.real_samples(len(x), seed=0 if seed is None else seed))
        if x.ndim == 4 and x.shape[1] in (1, 3):
            what = "" if labels is None else f", label {labels}"
            return grid_figure(path, x[:64], 8, f"{self.preset}, step {self.step}: samples of the {sampler}{what}")
        return None

    # ---------------------------------------------------------------- checkpoints
    def write_config(self):
        """DIR/config.json: the recipe, seed, backend and the versions that ran it (for people; the
        checkpoint holds its own copy for resuming)."""
        import platform
        from .. import __version__
        info = {**self.config(), "versions": {"minigan": __version__, "numpy": np.__version__,
                                              "python": platform.python_version()}}
        tmp = self.out_dir / (CONFIG + ".tmp")
        tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.out_dir / CONFIG)

    def config(self):
        return {"preset": self.preset, "seed": self.seed, "backend": self.backend,
                "data_dir": None if self.data_dir is None else str(self.data_dir), "recipe": self.recipe}

    def state(self):
        """Everything a resume needs, as a tree of arrays and strings (see checkpoint.save)."""
        def opt_tree(o):
            sd = o.state_dict()
            return {"hyperparams": json.dumps(sd["hyperparams"]), "state": sd["state"]}
        return {
            "format": "minigan-run-1", "config": json.dumps(self.config()), "step": self.step,
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "opt_g": opt_tree(self.opt_g), "opt_d": opt_tree(self.opt_d),
            "ema": self.ema if self.ema is not None else {}, "sampler": self.sampler,
            "schedules": json.dumps([None if s is None else s.state_dict() for s in self.schedules]),
            "rng": json.dumps({"data": _rng_state(self.rng), "G": _rng_state(self.G.rng),
                               "D": _rng_state(self.D.rng)}),
        }

    def save(self, path=None):
        path = Path(path) if path is not None else self.out_dir / CHECKPOINT
        checkpoint.save(path, self.state())
        return path

    def load_state(self, tree):
        self.step = int(tree["step"])
        self.G.load_state_dict(tree["G"])
        self.D.load_state_dict(tree["D"])
        for opt, key in ((self.opt_g, "opt_g"), (self.opt_d, "opt_d")):
            opt.load_state_dict({"hyperparams": json.loads(str(tree[key]["hyperparams"])),
                                 "state": tree[key].get("state", {})})
            opt.to(self.backend)
        if self.ema is not None:
            self.ema = {k: to_backend(np.array(v), self.backend) for k, v in tree["ema"].items()}
        sampler = str(tree.get("sampler", self.sampler))        # (checkpoints before the choice existed: the EMA)
        if sampler not in ("ema", "raw") or (sampler == "ema" and self.ema is None):
            raise CheckpointError(f"the checkpoint's sampler {sampler!r} is not one this run has")
        self.sampler = sampler
        for s, sd in zip(self.schedules, json.loads(str(tree["schedules"]))):
            if s is not None:
                s.load_state_dict(sd)
        rngs = json.loads(str(tree["rng"]))
        _set_rng_state(self.rng, rngs["data"])
        _set_rng_state(self.G.rng, rngs["G"])
        _set_rng_state(self.D.rng, rngs["D"])

    @classmethod
    def resume(cls, run_dir, data_dir=None, backend=None, preset=None, *, G=None, D=None, data=None, repair_log=True):
        """The run saved in ``run_dir``, ready to continue; ``preset`` (if given) must match.  A run of
        your own nets resumes with the same G, D and data passed again (the checkpoint holds their
        weights and state, not their code).  ``repair_log=False`` leaves log.jsonl as it is (for
        reading a run: sampling, evaluation)."""
        run_dir = Path(run_dir)
        tree = read_checkpoint(run_dir)
        cfg = json.loads(str(tree["config"]))
        if preset is not None and preset != cfg["preset"]:
            raise CheckpointError(f"{run_dir / CHECKPOINT} is a {cfg['preset']!r} run, not {preset!r}")
        # a key saved before it existed: what the run did then (legacy_recipe: the old width, G's BatchNorm
        # statistics), else its default (not the preset's value of today: ring8's penalty or truncation
        # did not apply to it)
        recipe = {**DEFAULT_RECIPE, **legacy_recipe(cfg["preset"]), **cfg["recipe"]}
        if cfg["preset"] == CUSTOM:
            if G is None or D is None or data is None:
                raise CheckpointError(f"{run_dir} trained your own nets: resume it with Trainer.resume(..., G=, D=, "
                                      f"data=) and the same architectures")
            for key in ("data", "dtype"):
                recipe.pop(key)
            z_dim = recipe.pop("z_dim")
            t = cls(None, cfg["seed"], backend or cfg["backend"], run_dir, None, G=G, D=D, data=data, z_dim=z_dim,
                    **recipe)
        else:
            t = cls(cfg["preset"], cfg["seed"], backend or cfg["backend"], run_dir, data_dir or cfg["data_dir"],
                    **recipe)
        t.load_state(tree)
        if repair_log and t.writer:
            _truncate_log(run_dir / LOG, t.step)
        return t


RUN_KEYS = ("format", "config", "step", "G", "D", "opt_g", "opt_d", "ema", "schedules", "rng")


def read_checkpoint(run_dir):
    """The checkpoint tree of ``run_dir``; CheckpointError (one line, what is wrong) for a missing,
    damaged, pickled or foreign file."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise CheckpointError(f"no checkpoint in {run_dir} (expected {path})")
    try:
        tree = checkpoint.load(path)
    except checkpoint.CheckpointFileError as e:
        raise CheckpointError(f"{e}; the run cannot resume from it") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} cannot be read: {e}") from None
    if str(tree.get("format", "")) != "minigan-run-1":
        raise CheckpointError(f"{path} is not a minigan training checkpoint")
    missing = [k for k in RUN_KEYS if k not in tree and k != "ema"]
    try:
        json.loads(str(tree.get("config", "")))
        json.loads(str(tree.get("rng", "")))
    except ValueError:
        missing.append("a readable config")
    if missing:
        raise CheckpointError(f"{path} is damaged (it lacks {', '.join(missing)}); the run cannot resume from it")
    return tree


def _truncate_log(path, step):
    """Drop log records past the checkpoint's step (written after it, before a crash), and a
    half-written last line (what a crash mid-write leaves).  A damaged line before the last one is
    not guessed at: CheckpointError, the file untouched."""
    if not path.exists():
        return
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    keep = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
            ok = isinstance(record, dict) and isinstance(record.get("step"), int)
        except ValueError:
            ok = False
        if not ok:
            if i == len(lines) - 1:
                break                                   # the torn last line: dropped
            raise CheckpointError(f"{path} line {i + 1} is damaged (not a JSON record with a step); fix or remove "
                                  f"that line to resume")
        if record["step"] <= step:
            keep.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)


def _clock(seconds):
    seconds = int(round(seconds))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _Progress:
    """step / total | losses | steps/s, elapsed, ETA: redrawn in place on a terminal (5 times a
    second at most); without one, a line every 10 % of the run and at least every 30 s."""

    QUIET_S = 30.0

    def __init__(self, total, start):
        self.total, self.start, self.t0 = total, start, time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.last = self.t0

    def update(self, rec):
        now = time.perf_counter()
        step = rec["step"]
        done = step - self.start
        tick = max(1, (self.total - self.start) // 10)
        if self.tty and now - self.last < 0.2 and step < self.total:
            return
        if not self.tty and done % tick and step < self.total and now - self.last < self.QUIET_S:
            return
        self.last = now
        elapsed = now - self.t0
        rate = done / max(elapsed, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        width = 24
        filled = int(width * step / max(self.total, 1))
        line = (f"[{'#' * filled}{'.' * (width - filled)}] step {step}/{self.total} | loss_d {rec['loss_d']:.4f} "
                f"loss_g {rec['loss_g']:.4f} | {rate:.1f} steps/s | elapsed {_clock(elapsed)} | ETA "
                f"{_clock(eta) if eta != float('inf') else '?'}")
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self):
        if self.tty:
            print(file=sys.stderr)
