"""The benchmark scripts' own accounting (their timings are not tested: machines are noisy)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
import gan_step  # noqa: E402
import gemm_rate  # noqa: E402


def test_gemm_recorder_counts_every_conv_gemm_of_the_dcgan32_step():
    """2*M*N*K summed over the recorded GEMMs equals the step's convolution FLOPs counted by hand:
    per layer MACs x passes (forward, backward-data, backward-filter).  D: 3 forwards (real, fake,
    fake again), 2 backward-filter, backward-data 3x except the first layer (only in G's step:
    input_grad=False skips it for the images); G: 1 forward, 1 backward-filter, backward-data for
    all but the first layer (none for z)."""
    batch = 2
    G, D, z, real, _ = gan_step.build("dcgan32", "numpy", batch)
    step = gan_step.minigan_step_fn(G, D, z, real)
    with gemm_rate.GemmRecorder(np, "numpy") as rec:
        step()
    assert np.matmul is rec.real                                   # unwrapped again
    d_macs = [16 * 16 * 64 * 1 * 16, 8 * 8 * 128 * 64 * 16, 4 * 4 * 256 * 128 * 16, 1 * 1 * 1 * 256 * 16]
    d_passes = [3 + 2 + 1, 3 + 2 + 3, 3 + 2 + 3, 3 + 2 + 3]
    g_macs = [1 * 1 * 100 * 256 * 16, 4 * 4 * 256 * 128 * 16, 8 * 8 * 128 * 64 * 16, 16 * 16 * 64 * 1 * 16]
    g_passes = [1 + 1 + 0, 1 + 1 + 1, 1 + 1 + 1, 1 + 1 + 1]
    expected = 2 * batch * (sum(m * p for m, p in zip(d_macs, d_passes)) + sum(m * p for m, p in zip(g_macs, g_passes)))
    assert sum(2 * m * n * k for m, n, k, _ in rec.calls) == expected
    assert len(rec.seconds()) == len(rec.calls) == sum(d_passes) + sum(g_passes)
