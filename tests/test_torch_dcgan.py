"""A DCGAN generator trained with PyTorch by a third party (../shared/data/torch-dcgan-mnist):
its state dict loads with no transposes and minigan reproduces PyTorch's outputs."""
import numpy as np
import pytest

import os
import sys

import minigan

from conftest import shared_data

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
from reference_fid import torch_generator_net as generator  # noqa: E402  (the net the yardstick scores)


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
