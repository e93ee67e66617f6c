"""A DCGAN generator trained with PyTorch by a third party (../shared/data/torch-dcgan-mnist):
its state dict loads with no transposes and minigan reproduces PyTorch's outputs."""
import numpy as np
import pytest

import minigan

from conftest import shared_data


def generator(dtype):
    CT, BN, R = minigan.ConvTranspose2d, minigan.BatchNorm2d, minigan.ReLU
    return minigan.Sequential(CT(64, 256, 3, stride=2), BN(256), R(),
                              CT(256, 128, 4, stride=1), BN(128), R(),
                              CT(128, 64, 3, stride=2), BN(64), R(),
                              CT(64, 1, 4, stride=2), minigan.Tanh(), dtype=dtype, seed=0)


@pytest.mark.parametrize("dtype,key,tol", [(np.float64, "out_eval_float64", 1e-10),
                                           (np.float32, "out_eval_float32", 1e-5)])
def test_torch_generator_reproduces_pytorch_outputs(dtype, key, tol):
    data = minigan.load(shared_data("torch-dcgan-mnist", "generator.npz"))
    G = generator(dtype)
    weights = {k: v for k, v in data.items() if k[0].isdigit()}
    G.load_state_dict(weights)        # strict; num_batches_tracked absent, as in many torch exports
    out = G(data["z"].astype(dtype))  # eval mode: running statistics
    assert out.shape == (16, 1, 28, 28) and out.dtype == dtype
    err = np.abs(out - data[key]).max()
    assert err <= tol, f"max abs difference {err:.3e}"


def test_loaded_generator_state_dict_round_trips():
    data = minigan.load(shared_data("torch-dcgan-mnist", "generator.npz"))
    G = generator(np.float32)
    G.load_state_dict({k: v for k, v in data.items() if k[0].isdigit()})
    sd = G.state_dict()
    np.testing.assert_array_equal(sd["3.weight"], data["3.weight"])
    assert sd["1.num_batches_tracked"] == 0 and sd["3.weight"].shape == (256, 128, 4, 4)
