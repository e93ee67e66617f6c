"""CuPy backend against the NumPy backend (float64 <= 1e-12, float32 <= 1e-5).  Skips cleanly
without cupy and a GPU; run on the device machine."""
import numpy as np
import pytest

import minigan
from minigan import cli

pytestmark = pytest.mark.skipif(not minigan.has_cupy(), reason="needs cupy and a CUDA GPU")

CASES = cli.layer_cases()


def _pair_of_nets(layers, dtype, seed):
    layers = layers if isinstance(layers, list) else [layers]
    a = minigan.Sequential(*layers, dtype=dtype, seed=seed)
    b = minigan.Sequential(*layers, dtype=dtype, seed=seed).to("cupy")
    return a, b


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_cupy_matches_numpy(i, dtype, tol):
    name, config, layers, shape, train = CASES[i]
    net, gnet = _pair_of_nets(layers, dtype, i)
    rng = np.random.default_rng(i)
    for _ in range(2):
        x = rng.standard_normal(shape).astype(dtype)
        y, tape = net.forward(x, train=train, rng=np.random.default_rng(5))
        gy, gtape = gnet.forward(minigan.to_backend(x, "cupy"), train=train, rng=np.random.default_rng(5))
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx, grads = net.backward(dy, tape)
        gdx, ggrads = gnet.backward(minigan.to_backend(dy, "cupy"), gtape)
        assert minigan.gradcheck.rel_error(minigan.asnumpy(gy), y) <= tol
        assert minigan.gradcheck.rel_error(minigan.asnumpy(gdx), dx) <= tol
        for k in grads:
            assert minigan.gradcheck.rel_error(minigan.asnumpy(ggrads[k]), grads[k]) <= tol, k
        gsd = gnet.state_dict()
        for k, v in net.state_dict().items():
            assert minigan.gradcheck.rel_error(minigan.asnumpy(gsd[k]), v) <= tol, k


def test_gradcheck_on_cupy_passes():
    assert cli.run_gradcheck(["cupy"]) == 0


@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                     ("Adam", dict(lr=1e-2, amsgrad=True)), ("AdamW", dict(lr=1e-2))])
def test_optimizers_on_cupy_match_numpy(name, kw):
    rng = np.random.default_rng(0)
    p = {"w": rng.standard_normal((4, 3))}
    gp = minigan.to_backend({"w": p["w"].copy()}, "cupy")
    a, b = getattr(minigan, name)(**kw), getattr(minigan, name)(**kw)
    for _ in range(10):
        g = {"w": rng.standard_normal((4, 3))}
        a.step(p, g)
        b.step(gp, minigan.to_backend(g, "cupy"))
    assert minigan.gradcheck.rel_error(minigan.asnumpy(gp["w"]), p["w"]) <= 1e-12


@pytest.mark.parametrize("name", minigan.OBJECTIVES)
def test_objectives_on_cupy_match_numpy(name):
    rng = np.random.default_rng(1)
    r, f = rng.standard_normal((6, 1)) * 5, rng.standard_normal((6, 1)) * 5
    obj = minigan.gan_objective(name)
    host = obj.d_loss(r, f) + obj.g_loss(f)
    dev = obj.d_loss(minigan.to_backend(r, "cupy"), minigan.to_backend(f, "cupy")) + obj.g_loss(minigan.to_backend(f, "cupy"))
    for h, d in zip(host, dev):
        assert minigan.gradcheck.rel_error(minigan.asnumpy(d), np.asarray(h)) <= 1e-12


def test_set_backend_cupy_makes_cupy_nets():
    minigan.set_backend("cupy")
    try:
        net = minigan.Sequential(minigan.Linear(3, 2), seed=0)
        assert net.backend == "cupy" and minigan.backend.is_cupy_array(net.parameters()["0.weight"])
        with pytest.raises(minigan.BackendError, match="mixed"):
            net.forward(np.zeros((2, 3), np.float32))
    finally:
        minigan.set_backend("numpy")


@pytest.mark.parametrize("out", [2, 7])          # 2 outputs of 4 inputs: backward passes; 7: tangent passes
def test_jacobian_truncation_on_cupy_matches_numpy(out):
    from minigan.gan.truncation import jacobian_norms, truncated_sample
    layers = [minigan.Linear(4, 8), minigan.nn.Tanh(), minigan.Linear(8, out)]
    net, gnet = _pair_of_nets(layers, np.float64, 3)
    z = np.random.default_rng(0).standard_normal((50, 4))
    y, norms = jacobian_norms(net, z)
    gy, gnorms = jacobian_norms(gnet, minigan.to_backend(z, "cupy"))
    assert isinstance(gnorms, np.ndarray) and minigan.backend.is_cupy_array(gy)
    assert minigan.gradcheck.rel_error(gnorms, norms) <= 1e-12
    tau = float(np.median(norms))
    draws = [np.random.default_rng(1), np.random.default_rng(1)]
    host = truncated_sample(net, lambda idx: draws[0].standard_normal((len(idx), 4)), 40, tau)
    dev = truncated_sample(gnet, lambda idx: minigan.to_backend(draws[1].standard_normal((len(idx), 4)), "cupy"), 40, tau)
    assert minigan.gradcheck.rel_error(minigan.asnumpy(dev), host) <= 1e-12


def test_standing_statistics_on_cupy_match_numpy():
    """The EMA net's own BatchNorm statistics (Trainer.standing_statistics) on the GPU: the same
    buffers and samples as on the CPU, after the same two float64 training steps."""
    from conftest import shared_data
    from minigan.gan import Trainer
    runs = [Trainer("dcgan-mnist", seed=3, dtype="float64", data_dir=shared_data("mnist"), batch_size=4, ema=0.5,
                    ema_bn_batches=3, backend=b) for b in ("numpy", "cupy")]
    for t in runs:
        for _ in range(2):
            t.train_step()
    host, dev = (t.sampling_net().buffers() for t in runs)
    for k in host:
        assert minigan.gradcheck.rel_error(minigan.asnumpy(dev[k]), host[k]) <= 1e-8, k
    assert minigan.gradcheck.rel_error(runs[1].sample(6, seed=1), runs[0].sample(6, seed=1)) <= 1e-8


def test_top_k_training_on_cupy_matches_numpy():
    """Top-k training (recipe topk) on the GPU: the same k fakes kept, the same weights after two float64
    steps of dcgan-mnist as on the CPU."""
    from conftest import shared_data
    from minigan.gan import Trainer
    runs = [Trainer("dcgan-mnist", seed=4, dtype="float64", data_dir=shared_data("mnist"), batch_size=8, topk=0.5,
                    backend=b) for b in ("numpy", "cupy")]
    for t in runs:
        for _ in range(2):
            t.train_step()
    host, dev = (t.G.state_dict() for t in runs)
    for k in host:
        assert minigan.gradcheck.rel_error(minigan.asnumpy(dev[k]), host[k]) <= 1e-8, k


def test_diffaugment_on_cupy_matches_numpy():
    """DiffAugment (recipe augment) on the GPU: the transforms and their adjoint on CuPy arrays give the host's
    values exactly, and two float64 dcgan-mnist steps with translation and cutout land where the CPU lands."""
    from conftest import shared_data
    from minigan.gan import Trainer
    from minigan.gan.augment import augment, augment_adjoint, draw_params
    rng = np.random.default_rng(0)
    params = draw_params(("translation", "cutout"), 6, (3, 28, 28), rng)
    x, g = rng.standard_normal((6, 3, 28, 28)), rng.standard_normal((6, 3, 28, 28))
    for f, a in ((augment, x), (augment_adjoint, g)):
        assert minigan.gradcheck.rel_error(minigan.asnumpy(f(minigan.to_backend(a, "cupy"), params)), f(a, params)) == 0
    runs = [Trainer("dcgan-mnist", seed=4, dtype="float64", data_dir=shared_data("mnist"), batch_size=8,
                    augment="translation,cutout", backend=b) for b in ("numpy", "cupy")]
    for t in runs:
        for _ in range(2):
            t.train_step()
    host, dev = (t.G.state_dict() for t in runs)
    for k in host:
        assert minigan.gradcheck.rel_error(minigan.asnumpy(dev[k]), host[k]) <= 1e-8, k


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_tangents_on_cupy_match_numpy(i):
    """Second order on the GPU: Sequential.jvp and backward_jvp (the Hessian-vector products the
    penalties are made of) along the same random tangents, float64, as on the CPU."""
    name, config, layers, shape, train = CASES[i]
    net, gnet = _pair_of_nets(layers, np.float64, i)
    rng = np.random.default_rng(100 + i)
    x = rng.standard_normal(shape)
    y, tape = net.forward(x, train=train, rng=np.random.default_rng(5))
    gy, gtape = gnet.forward(minigan.to_backend(x, "cupy"), train=train, rng=np.random.default_rng(5))
    x_dot, dy, dy_dot = rng.standard_normal(shape), rng.standard_normal(y.shape), rng.standard_normal(y.shape)
    p_dot = {k: rng.standard_normal(v.shape) for k, v in net.parameters().items()}
    dev = lambda a: minigan.to_backend(a, "cupy")
    y_dot, ttape = net.jvp(tape, x_dot, p_dot)
    gy_dot, gttape = gnet.jvp(gtape, dev(x_dot), dev(p_dot))
    dx_dot, grads_dot = net.backward_jvp(dy, tape, ttape, dy_dot)
    gdx_dot, ggrads_dot = gnet.backward_jvp(dev(dy), gtape, gttape, dev(dy_dot))
    assert minigan.gradcheck.rel_error(minigan.asnumpy(gy_dot), y_dot) <= 1e-12
    assert minigan.gradcheck.rel_error(minigan.asnumpy(gdx_dot), dx_dot) <= 1e-12
    assert set(ggrads_dot) == set(grads_dot)
    for k in grads_dot:
        assert minigan.gradcheck.rel_error(minigan.asnumpy(ggrads_dot[k]), grads_dot[k]) <= 1e-12, k


@pytest.mark.parametrize("penalty", ["r1", "wgan_gp"])
@pytest.mark.parametrize("spectral", [False, True])
def test_penalties_on_cupy_match_numpy(penalty, spectral):
    """R1 and WGAN-GP (value and parameter gradients) of dcgan-mnist's critic (convs, BatchNorm,
    LeakyReLU; spectrally normed or not) on the GPU as on the CPU, float64."""
    from minigan.gan import r1_penalty, wgan_gp_penalty
    from minigan.gan.models import build_nets, recipe_for
    recipe = recipe_for("dcgan-mnist", dtype="float64", spectral_norm=spectral, d_norm="batch")
    D = build_nets("dcgan-mnist", recipe, seed=2)[1]
    gD = build_nets("dcgan-mnist", recipe, seed=2)[1].to("cupy")
    rng = np.random.default_rng(4)
    real, fake, alpha = rng.standard_normal((5, 1, 28, 28)), rng.standard_normal((5, 1, 28, 28)), rng.random(5)
    dev = lambda a: minigan.to_backend(a, "cupy")
    if penalty == "r1":
        host = r1_penalty(D, real, 10.0, rng=np.random.default_rng(0))
        gpu = r1_penalty(gD, dev(real), 10.0, rng=np.random.default_rng(0))
    else:
        host = wgan_gp_penalty(D, real, fake, 10.0, alpha=alpha, dropout_rng=np.random.default_rng(0))
        gpu = wgan_gp_penalty(gD, dev(real), dev(fake), 10.0, alpha=alpha, dropout_rng=np.random.default_rng(0))
    assert minigan.gradcheck.rel_error(minigan.asnumpy(gpu[0]), np.asarray(host[0])) <= 1e-12
    assert set(gpu[1]) == set(host[1])
    for k in host[1]:
        assert minigan.gradcheck.rel_error(minigan.asnumpy(gpu[1][k]), host[1][k]) <= 1e-10, k


def test_a_checkpoint_saved_on_the_gpu_samples_the_same_on_the_cpu(tmp_path):
    """Train on cupy, save, resume with backend="numpy": the same weights and the same samples
    (float64: the same numbers through other kernels)."""
    from conftest import shared_data
    from minigan.gan import Trainer
    t = Trainer("dcgan-mnist", seed=1, dtype="float64", data_dir=shared_data("mnist"), batch_size=4, steps=3,
                ema_bn_batches=2, backend="cupy", out_dir=tmp_path).run(progress=False)
    cpu = Trainer.resume(tmp_path, backend="numpy", repair_log=False)
    assert cpu.backend == "numpy" and cpu.step == 3
    for k, v in t.G.state_dict().items():
        np.testing.assert_array_equal(cpu.G.state_dict()[k], minigan.asnumpy(v), err_msg=k)
    for ema in (True, False):
        assert minigan.gradcheck.rel_error(cpu.sample(8, seed=2, ema=ema), t.sample(8, seed=2, ema=ema)) <= 1e-10


FUSED_CASES = [i for i, c in enumerate(CASES) if "fused" in c[1]]


@pytest.mark.parametrize("i", FUSED_CASES + [-1], ids=[f"{CASES[i][0]}-{CASES[i][1]}" for i in FUSED_CASES]
                         + ["resnet-mnist blocks"])
def test_fused_pairs_on_cupy_match_numpy(i):
    """minigan.nn.fuse switched on for cupy (it is off there until this passes on a device): each fused
    pair, and resnet-mnist's up and down blocks, give the numbers of the plain pair on the CPU, first
    and second order, float64; the GPU tape really holds the fused runs."""
    from minigan.gan.models import _res_down, _res_up
    from minigan.nn.containers import _Fused
    from minigan.nn.fuse import fusion
    if i < 0:
        layers, shape = [_res_up(3, 4), _res_down(4, 2), _res_down(2, 2, first=True)], (2, 3, 6, 6)
    else:
        _, _, layers, shape, _ = CASES[i]
    net, gnet = _pair_of_nets(layers, np.float64, 7)
    rng = np.random.default_rng(7)
    dev = lambda a: minigan.to_backend(a, "cupy")
    x = rng.standard_normal(shape)
    with fusion(numpy=False, cupy=True):
        y, tape = net.forward(x)
        gy, gtape = gnet.forward(dev(x))
        flat = [c for c in gtape.caches if isinstance(c, _Fused)] + \
            [c for r in gtape.caches if isinstance(r, tuple) for part in r if isinstance(part, list)
             for c in part if isinstance(c, _Fused)]
        assert flat, "the cupy forward did not fuse"
        assert not any(isinstance(c, _Fused) for c in tape.caches)
        dy, dy_dot, x_dot = rng.standard_normal(y.shape), rng.standard_normal(y.shape), rng.standard_normal(shape)
        p_dot = {k: rng.standard_normal(v.shape) for k, v in net.parameters().items()}
        dx, grads = net.backward(dy, tape)
        gdx, ggrads = gnet.backward(dev(dy), gtape)
        y_dot, ttape = net.jvp(tape, x_dot, p_dot)
        gy_dot, gttape = gnet.jvp(gtape, dev(x_dot), dev(p_dot))
        dx_dot, grads_dot = net.backward_jvp(dy, tape, ttape, dy_dot)
        gdx_dot, ggrads_dot = gnet.backward_jvp(dev(dy), gtape, gttape, dev(dy_dot))
    for ours, theirs in ((gy, y), (gdx, dx), (gy_dot, y_dot), (gdx_dot, dx_dot)):
        assert minigan.gradcheck.rel_error(minigan.asnumpy(ours), theirs) <= 1e-12
    for g, h in ((ggrads, grads), (ggrads_dot, grads_dot)):
        assert set(g) == set(h)
        for k in h:
            assert minigan.gradcheck.rel_error(minigan.asnumpy(g[k]), h[k]) <= 1e-12, k
