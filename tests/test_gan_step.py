"""One whole GAN step (design.md) against the same step written in torch, on tiny nets with
BatchNorm: catches the classic bug of wiring G's backward without passing through D."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import minigan

from conftest import assert_rel, torch_net_like


def build(seed):
    # No bias before a BatchNorm: its exact gradient is 0, and Adam would turn the round-off noise
    # in that 0 into full-size steps whose direction no two implementations share.
    G = minigan.Sequential(minigan.Linear(4, 16, bias=False), minigan.BatchNorm1d(16), minigan.ReLU(),
                           minigan.Linear(16, 2), minigan.Tanh(), dtype=np.float64, seed=seed)
    D = minigan.Sequential(minigan.Linear(2, 16), minigan.LeakyReLU(0.2), minigan.Linear(16, 8, bias=False),
                           minigan.BatchNorm1d(8), minigan.LeakyReLU(0.2), minigan.Linear(8, 1),
                           dtype=np.float64, seed=seed + 1)
    return G, D


def minigan_step(G, D, opt_g, opt_d, objective, real, z):
    """The GAN step as design.md writes it (and README shows it: input_grad=False where dx is unused)."""
    fake, g_tape = G.forward(z, train=True)
    logit_r, tape_r = D.forward(real, train=True)
    logit_f, tape_f = D.forward(fake, train=True)
    loss_d, dlogit_r, dlogit_f = objective.d_loss(logit_r, logit_f)
    _, gD = D.backward(dlogit_r, tape_r, input_grad=False)
    _, gD = D.backward(dlogit_f, tape_f, grads=gD, input_grad=False)
    opt_d.step(D.parameters(), gD)
    logit_g, tape_g = D.forward(fake, train=True)
    loss_g, dlogit_g = objective.g_loss(logit_g)
    dfake, _ = D.backward(dlogit_g, tape_g, param_grads=False)
    _, gG = G.backward(dfake, g_tape, input_grad=False)
    opt_g.step(G.parameters(), gG)
    return float(loss_d), float(loss_g)


def torch_step(G, D, opt_g, opt_d, name, real, z):
    fake = G(z)
    logit_r, logit_f = D(real), D(fake.detach())
    if name == "non_saturating":
        loss_d = F.binary_cross_entropy_with_logits(logit_r, torch.ones_like(logit_r)) + \
            F.binary_cross_entropy_with_logits(logit_f, torch.zeros_like(logit_f))
    else:  # hinge
        loss_d = F.relu(1 - logit_r).mean() + F.relu(1 + logit_f).mean()
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    logit_g = D(fake)
    loss_g = F.binary_cross_entropy_with_logits(logit_g, torch.ones_like(logit_g)) \
        if name == "non_saturating" else -logit_g.mean()
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    return float(loss_d.detach()), float(loss_g.detach())


@pytest.mark.parametrize("name", ["non_saturating", "hinge"])
def test_gan_steps_match_torch(name):
    G, D = build(0)
    tG, tD = torch_net_like(G), torch_net_like(D)
    tG.train(), tD.train()
    opt_g, opt_d = minigan.Adam(lr=2e-3, betas=(0.5, 0.999)), minigan.Adam(lr=1e-3, betas=(0.5, 0.999))
    topt_g = torch.optim.Adam(tG.parameters(), lr=2e-3, betas=(0.5, 0.999))
    topt_d = torch.optim.Adam(tD.parameters(), lr=1e-3, betas=(0.5, 0.999))
    rng = np.random.default_rng(0)
    objective = minigan.gan_objective(name)
    for step in range(4):
        real = rng.standard_normal((8, 2))
        z = rng.standard_normal((8, 4))
        ld, lg = minigan_step(G, D, opt_g, opt_d, objective, real, z)
        tld, tlg = torch_step(tG, tD, topt_g, topt_d, name, torch.tensor(real), torch.tensor(z))
        assert abs(ld - tld) <= 1e-10 * max(1, abs(tld)) and abs(lg - tlg) <= 1e-10 * max(1, abs(tlg)), step
        # parameters are O(1): compared on a scale of at least 1, because a BN shift that starts at 0
        # can receive an exactly-cancelling gradient (hinge: sum of +-1/n), whose round-off Adam
        # turns into steps of lr * 1e-17 / eps ~ 1e-12 that differ between implementations
        for net, tnet in ((G, tG), (D, tD)):
            tsd = tnet.state_dict()
            for k, v in net.state_dict().items():
                assert_rel(v, tsd[k].numpy(), 1e-10, f"step {step} {k}", floor=1.0)


def test_generator_gradient_flows_through_discriminator():
    """dL_G/dθ_G from D.backward(param_grads=False) + G.backward equals finite differences of the
    whole composition (eval-mode BN so that the composition is a plain function of θ_G)."""
    G, D = build(3)
    obj = minigan.gan_objective("non_saturating")
    z = np.random.default_rng(1).standard_normal((6, 4))

    def loss_of_g():
        fake, _ = G.forward(z, train=False)
        return np.asarray(obj.g_loss(D.forward(fake, train=False)[0])[0])

    fake, g_tape = G.forward(z, train=False)
    logit, d_tape = D.forward(fake, train=False)
    _, dlogit = obj.g_loss(logit)
    dfake, none = D.backward(dlogit, d_tape, param_grads=False)
    assert none == {}
    _, gG = G.backward(dfake, g_tape)
    for name, p in G.parameters().items():
        numeric = minigan.gradcheck.numerical_vjp(lambda _: loss_of_g(), p, np.asarray(1.0))
        assert minigan.gradcheck.rel_error(gG[name], numeric) <= 1e-7, name
