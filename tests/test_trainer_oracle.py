"""Trainer.train_step itself against a torch implementation of the same recipe, in float64.

The trainer's random draws (real batches, labels, z, WGAN-GP's alpha) are recorded as it makes them
and handed to the torch side, which then runs the step as the README states it:

    n_critic times:  fake = G(z);  D loss on D(real), D(fake.detach()) (+ the penalty on its D steps,
                     weight x penalty_every);  + L1 on the gradients;  clip the global norm;
                     Adam step of D (L2 as Adam's weight decay);  clamp D's weights (weight_clip)
    then:            G loss on the *updated* D(fake of the last D step) (top-k: on the k largest logits
                     only; DiffAugment: D sees T real and T fake, fresh T each, and G's loss D(T fake));
                     gradients for G only;
                     L1, clip;  Adam step of G;  both LR schedules step;  EMA of G with warm-up
                     decay_t = min(ema, (1 + t) / (10 + t)).

After every step all parameters, BatchNorm statistics, SpectralNorm vectors, EMA weights and Adam
moments are compared.  Written so that a trainer that takes G's gradient through the old D, drops
the EMA warm-up, never clips, or skips a penalty fails it."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minigan.gan import Trainer
from minigan.gan import trainer as trainer_mod
from minigan.gradcheck import rel_error

from conftest import shared_data, torch_net_like
from torch_twin import torch_augment, torch_d_loss, torch_g_loss

TOL = 1e-9


class Recorder:
    """Wraps a trainer's draws; ``take()`` returns and forgets what one step drew."""

    def __init__(self, trainer, monkeypatch):
        self.draws = []
        real_batch, z = trainer._real_batch, trainer._z

        def recording_real(n):
            real, labels = real_batch(n)
            self.draws.append(("real", np.array(real), None if labels is None else np.array(labels)))
            return real, labels

        def recording_z(n):
            out = z(n)
            self.draws.append(("z", np.array(out)))
            return out

        def recording_gp(D, real, fake, lam, alpha=None, rng=None, train=True, dropout_rng=None):
            alpha = rng.random(len(real)) if alpha is None else alpha      # (the trainer draws and passes it)
            self.draws.append(("alpha", np.array(alpha)))
            return real_gp(D, real, fake, lam, alpha=alpha, rng=rng, train=train, dropout_rng=dropout_rng)
        def recording_aug(x):
            params = aug(x)
            if params is not None:
                self.draws.append(("aug", {k: np.array(v) for k, v in params.items()}))
            return params
        real_gp, aug = trainer_mod.wgan_gp_penalty, trainer._augment_params
        trainer._real_batch, trainer._z, trainer._augment_params = recording_real, recording_z, recording_aug
        monkeypatch.setattr(trainer_mod, "wgan_gp_penalty", recording_gp)

    def take(self):
        out, self.draws = self.draws, []
        return out


class TorchRecipe:
    """The recipe, step by step, in torch (float64), from the trainer's initial state."""

    def __init__(self, t):
        self.r, r = t.recipe, t.recipe
        self.G, self.D = torch_net_like(t.G), torch_net_like(t.D)
        self.opt_g = torch.optim.Adam(self.G.parameters(), r["lr_g"], tuple(r["betas_g"]), weight_decay=r["l2"])
        self.opt_d = torch.optim.Adam(self.D.parameters(), r["lr_d"], tuple(r["betas_d"]), weight_decay=r["l2"])
        self.scheds = []
        if r["lr_schedule"] == "cosine":
            self.scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=int(r["steps"]))
                           for o in (self.opt_g, self.opt_d)]
        elif r["lr_schedule"] == "exponential":          # (ring8's preset: its default recipe)
            self.scheds = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=r["lr_gamma"]) for o in (self.opt_g, self.opt_d)]
        elif r["lr_schedule"] != "constant":
            raise NotImplementedError(f"the torch twin has no {r['lr_schedule']!r} schedule")
        self.ema = {k: v.detach().clone() for k, v in self.G.named_parameters()} if r["ema"] else None
        self.step = 0

    def g_input(self, z, labels):
        if not self.r["conditional"]:
            return z
        return torch.cat([z, F.one_hot(torch.from_numpy(labels), 10).double()], 1)

    def d_input(self, x, labels):
        pack = self.r["pack"]
        if pack > 1:
            return x.reshape((len(x) // pack, pack * x.shape[1]) + tuple(x.shape[2:]))
        if not self.r["conditional"]:
            return x
        return torch.cat([x.reshape(len(x), -1), F.one_hot(torch.from_numpy(labels), 10).double()], 1)

    def penalty(self, d_real, d_fake, logit_real, alpha):
        r = self.r
        weight = r["penalty_weight"] * r["penalty_every"]
        if r["penalty"] == "r1":
            x, out = d_real, logit_real
        elif r["penalty"] == "r2":
            x = d_fake.detach().requires_grad_(True)
            out = self.D(x)
        else:
            a = torch.from_numpy(alpha).reshape((-1,) + (1,) * (d_real.ndim - 1))
            x = (d_real.detach() + a * (d_fake.detach() - d_real.detach())).requires_grad_(True)
            out = self.D(x)
        g, = torch.autograd.grad(out.sum(), x, create_graph=True)
        g = g.reshape(len(g), -1)
        if r["penalty"] == "wgan_gp":
            return weight * ((g.norm(2, dim=1) - 1) ** 2).mean()
        return weight / 2 * g.pow(2).sum(1).mean()

    def finish(self, params):
        """L1 then the global-norm clip, on the .grad of ``params`` (the trainer's order)."""
        params = list(params)
        if self.r["l1"]:
            for p in params:
                p.grad += self.r["l1"] * torch.sign(p.detach())
        if self.r["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(params, self.r["grad_clip"])

    def run_step(self, draws):
        r = self.r
        draws = list(draws)
        for k in range(r["n_critic"]):
            _, real, labels = draws.pop(0)
            _, z = draws.pop(0)
            fake = self.G(self.g_input(torch.from_numpy(z), labels))
            lazy = r["penalty"] != "none" and (self.step * r["n_critic"] + k) % r["penalty_every"] == 0
            real, fake_d = torch.from_numpy(real), fake.detach()
            if r["augment"] != "none":          # DiffAugment: D sees T_1 real, T_2 fake (the penalty there too)
                real, fake_d = torch_augment(real, draws.pop(0)[1]), torch_augment(fake_d, draws.pop(0)[1])
            d_real = self.d_input(real, labels).requires_grad_(lazy and r["penalty"] == "r1")
            d_fake = self.d_input(fake_d, labels)
            logit_r, logit_f = self.D(d_real), self.D(d_fake)
            loss = torch_d_loss(r["objective"], logit_r, logit_f)
            if lazy:
                alpha = draws.pop(0)[1] if r["penalty"] == "wgan_gp" else None
                loss = loss + self.penalty(d_real, d_fake, logit_r, alpha)
            self.opt_d.zero_grad()
            loss.backward()
            self.finish(self.D.parameters())
            self.opt_d.step()
            if r["weight_clip"]:
                with torch.no_grad():
                    for p in self.D.parameters():
                        p.clamp_(-r["weight_clip"], r["weight_clip"])
        if r["augment"] != "none":              # G's gradient through T_3 by autograd
            fake = torch_augment(fake, draws.pop(0)[1])
        logit_g = self.D(self.d_input(fake, labels)).reshape(-1)
        if r["topk"] < 1:                     # top-k training: G's loss on the k logits D rates most real
            logit_g = logit_g[torch.topk(logit_g, max(1, round(r["topk"] * len(logit_g)))).indices]
        loss_g = torch_g_loss(r["objective"], logit_g)
        grads = torch.autograd.grad(loss_g, list(self.G.parameters()))     # D's gradients untouched
        for p, g in zip(self.G.parameters(), grads):
            p.grad = g
        self.finish(self.G.parameters())
        self.opt_g.step()
        for s in self.scheds:
            s.step()
        if self.ema is not None:
            decay = min(r["ema"], (1 + self.step) / (10 + self.step))
            with torch.no_grad():
                for k, p in self.G.named_parameters():
                    self.ema[k].mul_(decay).add_((1 - decay) * p)
        self.step += 1
        assert not draws, f"the trainer drew more than the recipe uses: {[d[0] for d in draws]}"


def _compare(t, ref, step):
    for net, tnet, name in ((t.G, ref.G, "G"), (t.D, ref.D, "D")):
        ours, theirs = net.state_dict(), tnet.state_dict()
        assert list(ours) == list(theirs)
        for k in ours:
            err = rel_error(ours[k], theirs[k].numpy())
            assert err <= TOL, f"step {step}: {name} {k} differs from the torch recipe by {err:.3e}"
    if t.ema is not None:
        for k in t.ema:
            assert rel_error(t.ema[k], ref.ema[k].numpy()) <= TOL, f"step {step}: EMA {k}"
    for opt, topt, tnet in ((t.opt_g, ref.opt_g, ref.G), (t.opt_d, ref.opt_d, ref.D)):
        for k, p in tnet.named_parameters():
            st, tst = opt.state[k], topt.state[p]
            assert st["step"] == int(tst["step"]), f"step {step}: Adam step count of {k}"
            # (floors: a parameter whose exact gradient is 0 gets rounding noise in both libraries, ~1e-18:
            # resnet-mnist's bias of G's first block's last conv, every path from which meets a BatchNorm)
            for moment, floor in (("exp_avg", 1e-6), ("exp_avg_sq", 1e-12)):
                assert rel_error(st[moment], tst[moment].numpy(), floor) <= TOL, f"step {step}: {moment} of {k}"


RECIPES = {
    # every state the step touches, on the 2-D mixtures (MLPs)
    "ring8 non-saturating, n_critic 2, clip, L1, L2, cosine, EMA": (
        "ring8", dict(objective="non_saturating", n_critic=2, grad_clip=0.5, l1=1e-3, l2=1e-2,
                      lr_schedule="cosine", ema=0.95, batch_size=16, steps=20)),
    "grid25 hinge, packing, weight clip, R1 every 2nd D step, top-k G (2 of 8 packs)": (
        "grid25", dict(objective="hinge", pack=2, weight_clip=0.05, penalty="r1", penalty_weight=3.0,
                       penalty_every=2, n_critic=2, batch_size=16, ema=0.9, topk=0.3)),
    "ring8 wasserstein, spectral norm, WGAN-GP": (
        "ring8", dict(objective="wasserstein", spectral_norm=True, penalty="wgan_gp", penalty_weight=10.0,
                      n_critic=3, batch_size=16, lr_d=1e-3)),
    "ring8 least squares, R2, Adam betas, top-k G (8 of 16)": (
        "ring8", dict(objective="least_squares", penalty="r2", penalty_weight=1.0, betas_g=[0.0, 0.9],
                      betas_d=[0.3, 0.95], batch_size=16, topk=0.5)),
    "dcgan-mnist (BatchNorm), R1": (
        "dcgan-mnist", dict(objective="non_saturating", penalty="r1", penalty_weight=1.0, batch_size=8,
                            grad_clip=1.0, d_norm="batch")),
    "dcgan-mnist, DiffAugment (translation, cutout), lazy R1, top-k G, a three-conv D": (
        "dcgan-mnist", dict(objective="non_saturating", penalty="r1", penalty_weight=1.0, penalty_every=2,
                            batch_size=8, augment="translation,cutout", topk=0.5, n_critic=2, d_depth=3)),
    "dcgan-mnist (no BatchNorm in D), WGAN-GP, EMA, DiffAugment (translation)": (
        "dcgan-mnist", dict(objective="wasserstein", penalty="wgan_gp", penalty_weight=10.0, batch_size=8,
                            d_norm="none", ema=0.9, augment="translation")),
    "resnet-mnist (residual G and D, their pairs fused: minigan/nn/fuse.py), lazy R1, Adam 4e-4": (
        "resnet-mnist", dict(penalty="r1", penalty_weight=1.0, penalty_every=2, batch_size=4, lr_g=4e-4, lr_d=4e-4)),
    "cgan-mnist (conditional) minimax": (
        "cgan-mnist", dict(objective="minimax", batch_size=8, l1=1e-4)),
    "mlp-mnist (BatchNorm G), hinge, EMA": (
        "mlp-mnist", dict(g_norm="batch", d_dropout=0.0, batch_size=8, ema=0.9)),
}


@pytest.mark.parametrize("case", sorted(RECIPES))
def test_train_step_matches_the_torch_recipe(case, monkeypatch):
    preset, overrides = RECIPES[case]
    kw = {"data_dir": shared_data("mnist")} if "mnist" in preset else {}
    t = Trainer(preset, seed=5, dtype="float64", **kw, **overrides)
    recorder = Recorder(t, monkeypatch)
    ref = TorchRecipe(t)
    for step in range(1, 4):
        t.train_step()
        ref.run_step(recorder.take())
        _compare(t, ref, step)


@pytest.mark.parametrize("preset, overrides", [("dcgan-mnist", {}), ("resnet-mnist", {}),
                                               ("cgan-mnist", {"g_norm": "batch"})])
def test_the_ema_nets_standing_statistics_match_torch(preset, overrides):
    """The EMA net's BatchNorm statistics (Trainer.standing_statistics) are torch's: the twin of G holding
    the EMA weights, its statistics reset, momentum None (a cumulative average), run in training mode over
    the same K batches of noise: every running mean and variance agrees, BatchNorm2d in residual blocks too."""
    t = Trainer(preset, seed=3, dtype="float64", data_dir=shared_data("mnist"), batch_size=4, ema=0.5,
                ema_bn_batches=3, **overrides)
    for _ in range(2):
        t.train_step()
    net = t.sampling_net()
    twin = torch_net_like(t.G)
    twin.load_state_dict({**twin.state_dict(), **{k: torch.from_numpy(np.asarray(v)) for k, v in t.ema.items()}})
    norms = [m for m in twin.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    twin.train()
    rng = np.random.default_rng(trainer_mod.STANDING_SEED)
    with torch.no_grad():
        for _ in range(3):
            z = rng.standard_normal((4, t.recipe["z_dim"]))
            if t.recipe["conditional"]:
                z = np.concatenate([z, np.eye(10)[np.arange(4) % 10]], axis=1)
            twin(torch.from_numpy(z))
    ours, theirs = net.buffers(), twin.state_dict()
    assert len(norms) > 1 and any(k.endswith("running_var") for k in ours)
    for k, v in ours.items():
        np.testing.assert_allclose(np.asarray(v), theirs[k].numpy(), rtol=1e-10, atol=1e-12, err_msg=k)
