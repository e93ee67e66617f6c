"""minigan.save / minigan.load: one .npz, no pickle, atomic."""
import os

import numpy as np
import pytest

import minigan


def test_round_trip_nested_tree(tmp_path):
    net = minigan.Sequential(minigan.Linear(3, 2), minigan.BatchNorm1d(2), dtype=np.float64, seed=0)
    tree = {"G": net.state_dict(), "step": 17, "config": '{"preset": "ring8"}'}
    minigan.save(tmp_path / "ck.npz", tree)
    back = minigan.load(tmp_path / "ck.npz")
    assert int(back["step"]) == 17 and str(back["config"]) == '{"preset": "ring8"}'
    other = minigan.Sequential(minigan.Linear(3, 2), minigan.BatchNorm1d(2), dtype=np.float64, seed=1)
    other.load_state_dict(back["G"])
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)
    with np.load(tmp_path / "ck.npz", allow_pickle=False) as f:
        assert "G/0.weight" in f.files


def test_crash_mid_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    minigan.save(path, {"w": np.arange(3.0)})

    def torn_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(np, "savez", torn_savez)
    with pytest.raises(KeyboardInterrupt):
        minigan.save(path, {"w": np.zeros(3)})
    monkeypatch.undo()
    np.testing.assert_array_equal(minigan.load(path)["w"], np.arange(3.0))
    assert os.listdir(tmp_path) == ["ck.npz"]


def test_object_arrays_and_bad_keys_are_refused(tmp_path):
    with pytest.raises(TypeError, match="object array"):
        minigan.save(tmp_path / "x.npz", {"a": np.array([{}, 1], dtype=object)})
    with pytest.raises(ValueError, match="must not contain '/'"):
        minigan.save(tmp_path / "x.npz", {"a/b": np.zeros(1)})
