"""Second order: every layer's jvp and backward_jvp against central differences (float64) and
against torch (forward-mode AD over torch.autograd.grad(create_graph=True)), shapes drawn by hypothesis;
the GAN objectives' logit HVPs; R1 / R2 / WGAN-GP and SpectralNorm against torch, including
several train steps and a whole D step with R1; the errors of bad use."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.func import functional_call

import minigan
from minigan.gan import r1_penalty, wgan_gp_penalty
from minigan.gradcheck import check_jvp, rel_error

from conftest import compare_with_torch, shift_running_stats, torch_net_like
from torch_twin import torch_d_loss, torch_g_loss
from strategies import SECOND_ORDER_CASES

FD_TOL, TORCH_TOL = 1e-7, 1e-10


def _net(case, seed=0, dtype=np.float64):
    layers = case.layers if isinstance(case.layers, list) else [case.layers]
    return minigan.Sequential(*layers, dtype=dtype, seed=seed), case.shape


def _input(rng, shape):
    """Standard normal, kept 0.05 away from 0 so no activation kink is straddled."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 0.05, np.sign(x + 1e-12) * 0.05, x)


@pytest.mark.parametrize("kind", sorted(SECOND_ORDER_CASES))
@given(data=st.data())
def test_tangents_against_finite_differences(kind, data, cpu_kernels):
    net, shape = _net(data.draw(SECOND_ORDER_CASES[kind]))
    shift_running_stats(net)
    train = data.draw(st.booleans())
    errors = check_jvp(net, _input(np.random.default_rng(data.draw(st.integers(0, 99))), shape), train=train)
    assert max(errors.values()) <= FD_TOL, f"{net} train={train}: {errors}"


def torch_tangents(tnet, x, dy, x_dot, p_dot, dy_dot, train):
    """torch's (y, y_dot, dx_dot, {name: grad_dot}), forward over reverse: dual tensors (forward-mode
    AD) carry the tangents of x, dy and the parameters through torch.autograd.grad(create_graph=True).
    (torch.autograd.functional.jvp's double-backward trick needs third derivatives, which torch's
    ConvTranspose2d refuses for some output_padding geometries; forward over reverse needs none.)"""
    import torch.autograd.forward_ad as fwad

    if train and any(hasattr(m, "weight_orig") for m in tnet.modules()):
        # spectral_norm's power iteration writes u, v with out= ops that forward AD refuses: run it
        # here (train mode), then differentiate with those u, v held, which is torch's semantics
        with torch.no_grad():
            tnet.train()(torch.from_numpy(x))
        train = False
    tnet.train(train)
    names = [n for n, _ in tnet.named_parameters()]
    t = torch.from_numpy
    with fwad.dual_level():
        xd = fwad.make_dual(t(x), t(x_dot)).requires_grad_(True)
        ps = [fwad.make_dual(p.detach().clone(), t(p_dot[n])).requires_grad_(True)
              for n, p in tnet.named_parameters()]
        y = functional_call(tnet, dict(zip(names, ps)), (xd,))
        grads = torch.autograd.grad(y, [xd] + ps, fwad.make_dual(t(dy), t(dy_dot)), create_graph=True,
                                    allow_unused=True, materialize_grads=True)
        y_primal, y_dot = fwad.unpack_dual(y)
        dots = [fwad.unpack_dual(g).tangent for g in grads]
        dots = [torch.zeros_like(fwad.unpack_dual(g).primal) if d is None else d for g, d in zip(grads, dots)]
        return (y_primal.detach().numpy(), y_dot.detach().numpy(), dots[0].detach().numpy(),
                {n: d.detach().numpy() for n, d in zip(names, dots[1:])})


@pytest.mark.parametrize("kind", sorted(k for k in SECOND_ORDER_CASES if k != "dropout"))
@given(data=st.data())
def test_tangents_against_torch_double_backward(kind, data, cpu_kernels):
    case = data.draw(SECOND_ORDER_CASES[kind])
    net, shape = _net(case, seed=data.draw(st.integers(0, 2**16)))
    shift_running_stats(net)
    train = data.draw(st.booleans())
    tnet = case.torch_net(net)
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    x = _input(rng, shape)
    y, tape = net.forward(x, train=train)
    x_dot, dy, dy_dot = rng.standard_normal(x.shape), rng.standard_normal(y.shape), rng.standard_normal(y.shape)
    # some parameter tangents left out (a missing key is a zero tangent)
    p_dot = {k: rng.standard_normal(p.shape) for k, p in net.parameters().items() if rng.random() < 0.8}
    y_dot, ttape = net.jvp(tape, x_dot, p_dot)
    dx_dot, grads_dot = net.backward_jvp(dy, tape, ttape, dy_dot)
    full = {k: p_dot.get(k, np.zeros(p.shape)) for k, p in net.parameters().items()}
    ty, ty_dot, tdx_dot, tgrads_dot = torch_tangents(tnet, x, dy, x_dot, full, dy_dot, train)
    assert list(grads_dot) == list(net.parameters()) == list(tgrads_dot)
    for what, ours, theirs in [("output", y, ty), ("output tangent", y_dot, ty_dot),
                               ("input-gradient tangent", dx_dot, tdx_dot)] + \
            [(f"tangent of gradient {k}", grads_dot[k], tgrads_dot[k]) for k in grads_dot]:
        assert ours.shape == theirs.shape, what
        assert rel_error(ours, theirs) <= TORCH_TOL, f"{net} train={train} {what}: {rel_error(ours, theirs):.3e}"


def test_zero_tangents_give_zeros_and_the_plain_backward():
    """x_dot = None and no params_dot: y_dot = 0, and backward_jvp along dy_dot alone is
    backward(dy_dot) (the backward is linear in dy)."""
    net = minigan.Sequential(minigan.Linear(3, 4), minigan.BatchNorm1d(4), minigan.Tanh(), minigan.Linear(4, 2),
                             dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3))
    y, tape = net.forward(x)
    y_dot, ttape = net.jvp(tape)
    assert y_dot.shape == y.shape and not y_dot.any()
    dy, dy_dot = rng.standard_normal(y.shape), rng.standard_normal(y.shape)
    dx_dot, grads_dot = net.backward_jvp(dy, tape, ttape, dy_dot)
    dx, grads = net.backward(dy_dot, tape)
    np.testing.assert_allclose(dx_dot, dx, rtol=1e-12, atol=1e-14)
    for k in grads:
        np.testing.assert_allclose(grads_dot[k], grads[k], rtol=1e-12, atol=1e-14)
    dx0, g0 = net.backward_jvp(dy, tape, ttape)              # nothing moves: all zeros, every key present
    assert not dx0.any() and list(g0) == list(net.parameters()) and not any(g.any() for g in g0.values())


def test_input_grad_false_and_param_grads_false_agree_with_full():
    net = minigan.Sequential(minigan.Conv2d(2, 3, 3, padding=1), minigan.LeakyReLU(0.2), minigan.Flatten(),
                             minigan.Linear(48, 1), dtype=np.float64, seed=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 4, 4))
    y, tape = net.forward(x)
    dy = rng.standard_normal(y.shape)
    _, ttape = net.jvp(tape, rng.standard_normal(x.shape), {"0.weight": rng.standard_normal((3, 2, 3, 3))})
    dx_dot, grads_dot = net.backward_jvp(dy, tape, ttape)
    none, only_grads = net.backward_jvp(dy, tape, ttape, input_grad=False)
    only_dx, empty = net.backward_jvp(dy, tape, ttape, param_grads=False)
    assert none is None and empty == {}
    np.testing.assert_array_equal(only_dx, dx_dot)
    for k in grads_dot:
        np.testing.assert_array_equal(only_grads[k], grads_dot[k])


# ---------------------------------------------------------------- objectives

@pytest.mark.parametrize("name", minigan.OBJECTIVES)
def test_objective_hvp_against_torch(name):
    """d_loss_jvp / g_loss_jvp: the Hessian of each loss in the logits times a tangent, against the
    forward-mode derivative of torch's autograd gradient of the same loss."""
    rng = np.random.default_rng(0)
    r, f = rng.standard_normal((6, 1)) * 2, rng.standard_normal((5, 1)) * 2
    r_dot, f_dot = rng.standard_normal(r.shape), rng.standard_normal(f.shape)
    obj = minigan.gan_objective(name)
    ours_r, ours_f = obj.d_loss_jvp(r, f, r_dot, f_dot)
    ours_g = obj.g_loss_jvp(f, f_dot)
    def d_loss(r, f):
        return torch_d_loss(name, r, f)

    def g_loss(f):
        return torch_g_loss(name, f)

    def d_grads(r, f):
        return torch.autograd.grad(d_loss(r, f), (r, f), create_graph=True, materialize_grads=True)

    def g_grad(f):
        return torch.autograd.grad(g_loss(f), f, create_graph=True, materialize_grads=True)[0]

    t = torch.from_numpy
    _, (tr, tf) = torch.autograd.functional.jvp(d_grads, (t(r), t(f)), (t(r_dot), t(f_dot)))
    _, tg = torch.autograd.functional.jvp(g_grad, t(f), t(f_dot))
    for ours, theirs in ((ours_r, tr), (ours_f, tf), (ours_g, tg)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- penalties

def _critics():
    """Critics of every kind the penalties must handle (float64)."""
    M = minigan
    return {
        "mlp_tanh_sigmoid": ([M.Linear(3, 8), M.Tanh(), M.Linear(8, 8), M.Sigmoid(), M.Linear(8, 1)], (3,)),
        "mlp_relu_layernorm": ([M.Linear(3, 8), M.LayerNorm(8), M.ReLU(), M.Linear(8, 8), M.LeakyReLU(0.2),
                                M.Linear(8, 1)], (3,)),
        "conv_dilated_pooled": ([M.Conv2d(2, 4, (3, 2), stride=(1, 2), padding=1, dilation=(2, 1)), M.LeakyReLU(0.2),
                                 M.AvgPool2d(2), M.Conv2d(4, 3, 2), M.Tanh(), M.Flatten(), M.Linear(3 * 1 * 1, 1)],
                                (2, 6, 7)),
        "conv_transposed_upsampled": ([M.ConvTranspose2d(1, 3, 3, stride=2, padding=1, output_padding=1),
                                       M.Upsample(2), M.Conv2d(3, 2, 4, stride=4), M.Sigmoid(), M.Flatten(),
                                       M.Linear(2 * 4 * 4, 1)], (1, 4, 4)),
        "resnet_bn": ([M.Residual([M.Conv2d(1, 3, 3, padding=1, bias=False), M.BatchNorm2d(3), M.LeakyReLU(0.2)],
                                  [M.Conv2d(1, 3, 1)]), M.AvgPool2d(2), M.Flatten(), M.Linear(12, 1)], (1, 4, 4)),
        "spectral_norm": ([M.SpectralNorm(M.Conv2d(1, 4, 3, stride=2, padding=1)), M.LeakyReLU(0.1), M.Flatten(),
                           M.SpectralNorm(M.Linear(4 * 3 * 3, 6)), M.LeakyReLU(0.1), M.SpectralNorm(M.Linear(6, 1))],
                          (1, 5, 5)),
    }


CRITICS = _critics()


def _torch_penalty(tnet, x, kind, weight):
    """(value, grads) by torch's double backward, the textbook way (StyleGAN2 / Gulrajani et al.)."""
    x = torch.from_numpy(x).requires_grad_(True)
    g, = torch.autograd.grad(tnet(x).sum(), x, create_graph=True)
    g = g.reshape(len(g), -1)
    if kind == "r1":
        value = weight / 2 * g.pow(2).sum(1).mean()
    else:
        value = weight * ((g.norm(2, dim=1) - 1) ** 2).mean()
    grads = torch.autograd.grad(value, list(tnet.parameters()), allow_unused=True, materialize_grads=True)
    return value.item(), {n: gr.numpy() for (n, _), gr in zip(tnet.named_parameters(), grads)}


@pytest.mark.parametrize("critic", sorted(CRITICS))
@pytest.mark.parametrize("kind", ["r1", "r2", "wgan_gp"])
@given(seed=st.integers(0, 2**16), n=st.integers(2, 4), train=st.booleans())
def test_penalties_against_torch(critic, kind, seed, n, train):
    layers, shape = _critics()[critic]
    D = minigan.Sequential(*layers, dtype=np.float64, seed=seed)
    tD = torch_net_like(D).train(train)
    rng = np.random.default_rng(seed)
    real, fake = rng.standard_normal((n,) + shape), rng.standard_normal((n,) + shape) * 0.5
    weight = float(rng.uniform(0.1, 10))
    if kind == "wgan_gp":
        alpha = rng.random(n)
        value, grads = wgan_gp_penalty(D, real, fake, weight, alpha=alpha, train=train)
        x_hat = real + alpha.reshape((n,) + (1,) * len(shape)) * (fake - real)
        t_value, t_grads = _torch_penalty(tD, x_hat, "wgan_gp", weight)
    else:
        x = real if kind == "r1" else fake
        value, grads = r1_penalty(D, x, weight, train=train)
        t_value, t_grads = _torch_penalty(tD, x, "r1", weight)
    assert value.shape == () and value.dtype == np.float64
    assert abs(float(value) - t_value) <= 1e-10 * abs(t_value)
    assert list(grads) == list(D.parameters()) == list(t_grads)
    for k in grads:
        assert rel_error(grads[k], t_grads[k]) <= TORCH_TOL, f"{critic} {kind} {k}: {rel_error(grads[k], t_grads[k]):.3e}"
    for k, v in D.state_dict().items():          # the same power iterations / running statistics
        np.testing.assert_allclose(v, tD.state_dict()[k].numpy(), rtol=1e-12, atol=1e-14, err_msg=k)


def test_wgan_gp_draws_alpha_from_rng_and_handles_a_zero_gradient():
    D = minigan.Sequential(minigan.Linear(2, 4), minigan.ReLU(), minigan.Linear(4, 1), dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    a = wgan_gp_penalty(D, real, fake, 10.0, rng=np.random.default_rng(7))
    b = wgan_gp_penalty(D, real, fake, 10.0, alpha=np.random.default_rng(7).random(5))
    assert float(a[0]) == float(b[0])
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k])
    D.parameters()["2.weight"][...] = 0          # g = 0 everywhere: value = lam, gradient 0 (as torch's norm)
    value, grads = wgan_gp_penalty(D, real, fake, 10.0, rng=rng)
    assert float(value) == pytest.approx(10.0) and all(np.isfinite(g).all() for g in grads.values())
    with pytest.raises(ValueError, match="alpha must have shape"):
        wgan_gp_penalty(D, real, fake, 10.0, alpha=np.ones(4))
    with pytest.raises(ValueError, match="same shape"):
        wgan_gp_penalty(D, real, fake[:3], 10.0)


def test_r1_penalty_float32_matches_float64():
    """No finite differences anywhere: in float32 the exact tangents stay close to float64's."""
    layers, shape = _critics()["conv_dilated_pooled"]
    D64 = minigan.Sequential(*layers, dtype=np.float64, seed=3)
    D32 = minigan.Sequential(*_critics()["conv_dilated_pooled"][0], dtype=np.float32, seed=3)
    D32.load_state_dict(D64.state_dict())
    x = np.random.default_rng(0).standard_normal((4,) + shape)
    v64, g64 = r1_penalty(D64, x, 5.0)
    v32, g32 = r1_penalty(D32, x.astype(np.float32), 5.0)
    assert g32["0.weight"].dtype == np.float32 and v32.dtype == np.float32
    assert abs(float(v32) - float(v64)) <= 1e-5 * abs(float(v64))
    for k in g64:
        assert rel_error(g32[k], g64[k]) <= 1e-4, k


# ---------------------------------------------------------------- spectral norm

def test_spectral_norm_loads_torch_state_and_tracks_u_v_over_train_steps():
    """torch's state_dict of spectral_norm layers loads as it is; then forward + backward + Adam
    steps in train mode keep the weights, u, v and outputs equal to torch's."""
    torch.manual_seed(0)
    tnet = torch.nn.Sequential(torch.nn.utils.spectral_norm(torch.nn.Conv2d(2, 4, 3, padding=1)), torch.nn.LeakyReLU(0.2),
                               torch.nn.utils.spectral_norm(torch.nn.ConvTranspose2d(4, 3, 2, stride=2)),
                               torch.nn.Flatten(), torch.nn.utils.spectral_norm(torch.nn.Linear(3 * 8 * 8, 1))).double()
    net = minigan.Sequential(minigan.SpectralNorm(minigan.Conv2d(2, 4, 3, padding=1)), minigan.LeakyReLU(0.2),
                             minigan.SpectralNorm(minigan.ConvTranspose2d(4, 3, 2, stride=2)), minigan.Flatten(),
                             minigan.SpectralNorm(minigan.Linear(3 * 8 * 8, 1)), dtype=np.float64, seed=1)
    assert list(net.state_dict()) == list(tnet.state_dict())
    net.load_state_dict(tnet.state_dict())
    assert net.state_dict()["2.weight_v"].shape == (4 * 2 * 2,)     # ConvTranspose2d: dim 1
    opt, topt = minigan.Adam(1e-2), torch.optim.Adam(tnet.parameters(), 1e-2)
    rng = np.random.default_rng(0)
    for step in range(4):
        x = rng.standard_normal((3, 2, 4, 4))
        y, tape = net.forward(x, train=True)
        dy = rng.standard_normal(y.shape)
        dx, grads = net.backward(dy, tape)
        topt.zero_grad()
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = tnet(xt)
        yt.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, err_msg=f"step {step}")
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
        for k, p in tnet.named_parameters():
            assert rel_error(grads[k], p.grad.numpy()) <= 1e-10, (step, k)
        opt.step(net.parameters(), grads)
        topt.step()
        for k, v in tnet.state_dict().items():
            assert rel_error(net.state_dict()[k], v.numpy()) <= 1e-10, (step, k)
    tnet.eval()                                           # eval: no power iteration, still divided by sigma
    x = rng.standard_normal((2, 2, 4, 4))
    u = net.state_dict()["0.weight_u"]
    np.testing.assert_allclose(net(x), tnet(torch.from_numpy(x)).detach().numpy(), rtol=1e-10)
    np.testing.assert_array_equal(net.state_dict()["0.weight_u"], u)


@given(data=st.data())
def test_spectral_norm_parity_with_compare_with_torch(data):
    from strategies import spectral_norm_case
    case = data.draw(spectral_norm_case())
    net, shape = _net(case, seed=data.draw(st.integers(0, 2**16)))
    rng = np.random.default_rng(0)
    compare_with_torch(net, case.torch_net(net), [_input(rng, shape) for _ in range(3)],
                       data.draw(st.booleans()), 1e-10, rng)


# ---------------------------------------------------------------- a whole D step with R1

def test_d_step_with_r1_matches_torch():
    """Two D steps (non-saturating loss on real and fake, R1 on the reals, Adam) against the same
    steps in torch with double backward."""
    M = minigan
    D = M.Sequential(M.Conv2d(1, 4, 4, stride=2, padding=1), M.LeakyReLU(0.2), M.Conv2d(4, 8, 4, stride=2, padding=1),
                     M.LayerNorm((8, 2, 2)), M.LeakyReLU(0.2), M.Flatten(), M.Linear(32, 1), dtype=np.float64, seed=0)
    tD = torch_net_like(D)
    opt, topt = M.Adam(1e-3, betas=(0.0, 0.99)), torch.optim.Adam(tD.parameters(), 1e-3, betas=(0.0, 0.99))
    obj, gamma = M.gan_objective("non_saturating"), 10.0
    rng = np.random.default_rng(0)
    for _ in range(2):
        real, fake = rng.standard_normal((4, 1, 8, 8)), rng.standard_normal((4, 1, 8, 8))
        logit_r, tape_r = D.forward(real)
        logit_f, tape_f = D.forward(fake)
        loss, dr, df = obj.d_loss(logit_r, logit_f)
        _, g = D.backward(dr, tape_r, input_grad=False)
        _, g = D.backward(df, tape_f, grads=g, input_grad=False)
        value, gp = r1_penalty(D, real, gamma)
        for k in g:
            g[k] += gp[k]
        opt.step(D.parameters(), g)

        topt.zero_grad()
        xr = torch.from_numpy(real).requires_grad_(True)
        out_r = tD(xr)
        grad_r, = torch.autograd.grad(out_r.sum(), xr, create_graph=True)
        t_loss = (torch.nn.functional.softplus(-out_r).mean() + torch.nn.functional.softplus(tD(torch.from_numpy(fake))).mean()
                  + gamma / 2 * grad_r.pow(2).reshape(4, -1).sum(1).mean())
        t_loss.backward()
        topt.step()
        assert abs(float(loss) + float(value) - t_loss.item()) <= 1e-10 * abs(t_loss.item())
        for k, v in tD.state_dict().items():
            assert rel_error(D.state_dict()[k], v.numpy()) <= 1e-10, k


# ---------------------------------------------------------------- errors

def test_bad_use_raises_clear_errors():
    net = minigan.Sequential(minigan.Linear(3, 4), minigan.Tanh(), minigan.Linear(4, 1), dtype=np.float64, seed=0)
    x = np.ones((2, 3))
    y, tape = net.forward(x)
    with pytest.raises(ValueError, match=r"x_dot has shape \(2, 4\), but the forward input had shape \(2, 3\)"):
        net.jvp(tape, np.ones((2, 4)))
    with pytest.raises(TypeError, match="x_dot has dtype float32"):
        net.jvp(tape, np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"params_dot\['0.weight'\] has shape \(3, 4\), but parameter '0.weight'"):
        net.jvp(tape, params_dot={"0.weight": np.ones((3, 4))})
    with pytest.raises(KeyError, match="not parameters of this network"):
        net.jvp(tape, params_dot={"0.wieght": np.ones((4, 3))})
    y_dot, ttape = net.jvp(tape, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"dy_dot has shape \(2, 2\)"):
        net.backward_jvp(np.ones_like(y), tape, ttape, np.ones((2, 2)))
    _, other_tape = net.forward(x)
    with pytest.raises(ValueError, match="ttape was not made by jvp from this tape"):
        net.backward_jvp(np.ones_like(y), other_tape, ttape)
    with pytest.raises(ValueError, match="ttape was not made by jvp"):
        net.backward_jvp(np.ones_like(y), tape, tape)
    other = minigan.Sequential(minigan.Linear(3, 1), dtype=np.float64)
    with pytest.raises(ValueError, match="not made by this network"):
        other.jvp(tape)
    net.backward(np.ones_like(y), tape, free_tape=True)
    for call in (lambda: net.jvp(tape), lambda: net.backward_jvp(np.ones_like(y), tape, ttape)):
        with pytest.raises(ValueError, match="freed by an earlier backward"):
            call()
    for bad in (minigan.ReLU(), minigan.BatchNorm1d(3), minigan.Sequential(minigan.Linear(2, 2))):
        with pytest.raises(TypeError, match="SpectralNorm wraps a layer with a weight"):
            minigan.SpectralNorm(bad)
    with pytest.raises(ValueError, match="n_power_iterations must be a positive int"):
        minigan.SpectralNorm(minigan.Linear(2, 2), n_power_iterations=0)


def test_a_layer_without_tangents_is_named():
    class Square(minigan.nn.Layer):
        def apply(self, params, state, x, train, rng):
            return x * x, x

        def apply_backward(self, params, dy, x, param_grads):
            return 2 * x * dy, {}

    net = minigan.Sequential(minigan.Linear(2, 2), Square(), dtype=np.float64)
    _, tape = net.forward(np.ones((1, 2)))
    with pytest.raises(minigan.LayerInputError, match="layer 1 Square.*has no tangent rules"):
        net.jvp(tape, np.ones((1, 2)))
