"""minigan as a library: composition of Sequential, astype, the safety rails, readable pictures
(with matplotlib and with numpy alone), progress with ETA, config.json."""
import json

import numpy as np
import pytest

import minigan
from minigan import viz
from minigan.gan.trainer import Trainer


def _net(dtype=np.float32):
    return minigan.Sequential(minigan.Linear(3, 8), minigan.LeakyReLU(0.2), minigan.Linear(8, 4), minigan.Tanh(),
                              minigan.Linear(4, 1), dtype=dtype, seed=0)


def test_sequential_len_iter_index_and_prefix_slices_share_arrays():
    D = _net()
    assert len(D) == 5 and list(D) == D.layers and D[2] is D.layers[2] and D[-1] is D.layers[4]
    feats = D[:2]                                     # feature matching: D's first layers, same names
    assert list(feats.parameters()) == ["0.weight", "0.bias"]
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    h, tape = feats.forward(x)
    full_h, _ = D[:2].forward(x)
    np.testing.assert_array_equal(h, full_h)
    _, grads = feats.backward(np.ones_like(h), tape)
    assert set(grads) == {"0.weight", "0.bias"}
    feats.parameters()["0.bias"][0] = 7.0             # the same arrays
    assert D.parameters()["0.bias"][0] == 7.0
    with pytest.raises(ValueError, match="contiguous"):
        D[::2]


def test_astype_copies_and_casts():
    D = _net()
    D64 = D.astype(np.float64)
    assert D64.dtype == np.float64 and all(p.dtype == np.float64 for p in D64.parameters().values())
    x = np.random.default_rng(0).standard_normal((4, 3))
    np.testing.assert_allclose(D64(x), D(x.astype(np.float32)), rtol=1e-5, atol=1e-6)
    D64.parameters()["0.bias"][0] += 1
    assert D64.parameters()["0.bias"][0] != D.parameters()["0.bias"][0]


def test_one_optimizer_for_two_nets_is_refused():
    a, b = _net(), _net()
    opt = minigan.Adam(1e-3)
    grads = {k: np.ones_like(p) for k, p in a.parameters().items()}
    opt.step(a.parameters(), grads)
    with pytest.raises(ValueError, match="one optimizer per network"):
        opt.step(b.parameters(), grads)
    opt.step(a.parameters(), grads)                   # the bound net still steps


def test_optimizer_state_of_a_shape_it_does_not_fit_is_refused():
    p = {"w": np.zeros(3)}
    opt = minigan.Adam(1e-3)
    opt.step(p, {"w": np.ones(3)})
    opt2 = minigan.Adam(1e-3)
    opt2.load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="has shape \\(4,\\) but the optimizer state holds \\(3,\\)"):
        opt2.step({"w": np.zeros(4)}, {"w": np.ones(4)})


def test_an_optimizer_that_never_stepped_round_trips(tmp_path):
    opt = minigan.Adam(1e-3)
    minigan.save(tmp_path / "o.npz", {"opt": {"hyperparams": json.dumps(opt.state_dict()["hyperparams"]),
                                              "state": opt.state_dict()["state"]}})
    tree = minigan.load(tmp_path / "o.npz")
    fresh = minigan.Adam(5e-1)
    fresh.load_state_dict({"hyperparams": json.loads(str(tree["opt"]["hyperparams"]))})
    assert fresh.lr == 1e-3 and fresh.state == {}


def test_a_misspelt_gradient_key_is_an_error():
    class Scale(minigan.nn.Layer):
        def init(self, rng, dtype, scheme="torch"):
            return {"scale": np.ones(1, dtype)}, {}

        def apply(self, params, state, x, train, rng):
            return x * params["scale"], x

        def apply_backward(self, params, dy, x, param_grads):
            return dy * params["scale"], {"scael": (dy * x).sum(keepdims=True).reshape(1)}

    net = minigan.Sequential(Scale(), dtype=np.float64)
    y, tape = net.forward(np.ones((2, 1)))
    with pytest.raises(ValueError, match="gradients for \\['0.scael'\\].*misspelt"):
        net.backward(np.ones_like(y), tape)


def test_mnist_classifier_refuses_the_wrong_range():
    from minigan.metrics import MnistClassifier
    clf = MnistClassifier()
    x = np.random.default_rng(0).uniform(0, 1, (32, 1, 28, 28))
    with pytest.raises(ValueError, match="scaled to \\[0, 1\\].*2 \\* x - 1"):
        clf.predict(x)
    with pytest.raises(ValueError, match="values in \\[0, 255\\]"):
        clf.predict(np.full((2, 1, 28, 28), 255.0) * np.linspace(0, 1, 2)[:, None, None, None])


@pytest.mark.parametrize("with_matplotlib", [True, False])
def test_pictures_with_and_without_matplotlib(tmp_path, monkeypatch, with_matplotlib):
    if not with_matplotlib:
        monkeypatch.setattr(viz, "_pyplot", lambda: None)      # a numpy-only install
    t = Trainer("ring8", seed=0, steps=30, batch_size=16, sample_every=0, checkpoint_every=0, out_dir=tmp_path)
    t.run(progress=False)
    assert (tmp_path / "samples.png").read_bytes()[:4] == b"\x89PNG"
    from minigan.cli import write_curves
    assert write_curves(str(tmp_path)) == str(tmp_path / "curves.png")
    grid = viz.grid_figure(tmp_path / "g.png", np.zeros((64, 1, 28, 28)), 8, "title")
    import zlib
    raw = (tmp_path / "g.png").read_bytes()
    width = int.from_bytes(raw[16:20], "big")
    assert grid == tmp_path / "g.png" and width >= 600           # readable: not a 242-px thumbnail
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["preset"] == "ring8" and cfg["versions"]["numpy"] == np.__version__
    assert zlib is not None


@pytest.mark.parametrize("with_matplotlib", [True, False])
@pytest.mark.parametrize("log", ["", "\n{\"step\": 3, \"loss\n", "[1, 2]\n"])
def test_curves_of_a_log_with_nothing_to_draw_are_no_picture(tmp_path, monkeypatch, with_matplotlib, log):
    """An empty log (a checkpoint copied into a directory of its own), a torn line or records without a
    step draw nothing: write_curves says so with None instead of failing after minigan eval's metrics."""
    if not with_matplotlib:
        monkeypatch.setattr(viz, "_pyplot", lambda: None)
    from minigan.cli import write_curves
    (tmp_path / "log.jsonl").write_text(log)
    assert write_curves(str(tmp_path)) is None and not (tmp_path / "curves.png").exists()
    (tmp_path / "log.jsonl").write_text(log + '{"step": 1, "loss_d": 1.5}\n')
    assert write_curves(str(tmp_path)) == str(tmp_path / "curves.png")


def test_smooth_is_a_moving_average():
    y = np.arange(10.0)
    s = viz.smooth(y, 3)
    np.testing.assert_allclose(s[2:], y[1:-1])
    assert s[0] == 0 and s[1] == 0.5


def test_progress_without_a_terminal_prints_eta_and_at_least_every_30_s(monkeypatch, capsys):
    from minigan.gan import trainer as trainer_mod
    clock = iter(np.arange(0.0, 10000.0, 40.0))      # 40 s per step
    monkeypatch.setattr(trainer_mod.time, "perf_counter", lambda: float(next(clock)))
    bar = trainer_mod._Progress(1000, 0)
    for step in range(1, 4):
        bar.update({"step": step, "loss_d": 1.0, "loss_g": 1.0})
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and "ETA" in lines[-1] and "elapsed 2:00" in lines[-1]
