"""A standing mutation check: realistic one-line bugs, each injected into a copy of the package,
each of which the named tests must catch.

    python tools/mutants.py            # all mutants; exit 1 if any survives
    python tools/mutants.py -k ema     # the mutants whose name contains "ema"

Each mutant replaces one exact piece of source (it must occur exactly once, so a refactor that
moves the code makes the list fail loudly instead of testing nothing) in one temporary copy of
``minigan/`` and ``tests/`` (restored after each mutant, so numba's on-disk cache stays valid),
then runs the named tests there (the copy first on PYTHONPATH, hypothesis derandomized as always).  A mutant is *killed* when those tests fail.  A curated list
rather than mutmut / cosmic-ray: those generate thousands of operator swaps, most of them in code
whose numbers no test could distinguish (error messages, reprs), and take hours on two cores;
these are the bugs an engine like this actually gets (a dropped term, an off-by-one in a
statistic, an update in the wrong order), chosen across ops, optim, gan and the trainer.
"""
import argparse
import concurrent.futures
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# One mutant's tests take 0.3-60 s; a run past TIMEOUT_S is a stall (one was seen in CI: 12+ min on a test
# that takes 25 s there), reported as its own outcome that fails the check, never counted as killed.
TIMEOUT_S = 300
FAULTHANDLER_S = 120     # pytest dumps every thread's stack when one test runs longer than this

# (name, file, old, new, tests that must fail)
MUTANTS = [
    ("linear tangent loses dy W_dot", "minigan/ops/linear.py",
     "None if w_dot is None else matmul(dy, w_dot))", "None)", ["tests/test_second_order.py"]),
    ("conv tangent loses conv(x, W_dot)", "minigan/ops/conv.py",
     "None if w_dot is None else conv2d_forward(x, w_dot, None, *geometry)[0])", "None)",
     ["tests/test_second_order.py"]),
    ("stride-1 conv as convT: the kernel flipped on one axis only", "minigan/ops/conv.py",
     "weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]", "weight.transpose(1, 0, 2, 3)[:, :, ::-1, :]",
     ["tests/test_conv_reference.py", "-k", "output_side"]),
    ("fused Upsample+conv: a tap of the 4-tap kernel misplaced", "minigan/nn/fuse.py",
     "_UP = ((0, 0, 1), (0, 1, 1),", "_UP = ((0, 0, 1), (1, 0, 1),", ["tests/test_fuse.py"]),
    ("fused pair's tangent drops the weight tangent", "minigan/nn/fuse.py",
     '{**d, "weight": self._to(d.get("weight"))}', '{**d, "weight": None}',
     ["tests/test_second_order.py", "-k", "fused_pair"]),
    ("K = 1 product gives -0 where a GEMM gives +0", "minigan/ops/__init__.py",
     "        out += 0\n", "", ["tests/test_layers.py", "-k", "matmul"]),
    ("normalize backward: dmean over M - 1", "minigan/ops/norm.py",
     "    dx += dmean / m\n", "    dx += dmean / (m - 1)\n", ["tests/test_layers.py"]),
    ("BatchNorm running variance biased", "minigan/ops/norm.py",
     "momentum * var * (m_count / (m_count - 1))", "momentum * var",
     ["tests/test_layers.py", "-k", "torch_parity and batch_norm"]),
    ("normalize tangent: invstd_dot sign", "minigan/ops/norm.py",
     "return xhat_dot, -invstd * invstd * c", "return xhat_dot, invstd * invstd * c", ["tests/test_second_order.py"]),
    ("tanh backward tangent: curvature halved", "minigan/ops/activations.py",
     "-2 * dy * y * y_dot", "-dy * y * y_dot", ["tests/test_second_order.py"]),
    ("avg pool: count_include_pad ignored", "minigan/ops/pool.py",
     "if count_include_pad or padding == (0, 0):", "if True:", ["tests/test_layers.py", "-k", "avg_pool"]),
    ("Conv2d stores its stride reversed", "minigan/nn/affine.py",
     'self.stride = _pair(stride, "Conv2d stride", allow_zero=False)',
     'self.stride = _pair(stride, "Conv2d stride", allow_zero=False)[::-1]',
     ["tests/test_layers.py", "-k", "conv and not transpose"]),
    ("dropout scales by 1/p", "minigan/nn/activations.py",
     "scale = 0.0 if self.p == 1 else 1 / (1 - self.p)", "scale = 0.0 if self.p == 1 else 1 / max(self.p, 1e-3)",
     ["tests/test_layers.py", "-k", "dropout"]),
    ("spectral norm: u updated before v", "minigan/nn/affine.py",
     "                v[...] = _l2_normalize(wm.T @ u, self.eps)\n                u[...] = _l2_normalize(wm @ v, self.eps)",
     "                u[...] = _l2_normalize(wm @ v, self.eps)\n                v[...] = _l2_normalize(wm.T @ u, self.eps)",
     ["tests/test_second_order.py", "-k", "spectral"]),
    ("spectral norm: sigma's gradient dropped", "minigan/nn/affine.py",
     "return (g - (g * w_sn).sum() * uv) / sigma, uv", "return g / sigma, uv", ["tests/test_second_order.py"]),
    ("Adam: no bias correction of v", "minigan/optim.py",
     "bc2_sqrt = (1 - b2 ** t) ** 0.5", "bc2_sqrt = 1.0", ["tests/test_optim.py"]),
    ("clip: torch's 1e-6 guard changed", "minigan/optim.py",
     "coef = min(max_norm / (total + 1e-6), 1.0)", "coef = min(max_norm / (total + 1e-3), 1.0)",
     ["tests/test_optim.py"]),
    ("least squares G loss aims at 0", "minigan/gan/losses.py",
     "return 0.5 * _mean((f - 1) ** 2), (f - 1) / n", "return 0.5 * _mean((f - 1) ** 2), f / n",
     ["tests/test_objectives.py"]),
    ("minimax G HVP sign", "minigan/gan/losses.py",
     "return (-h if generator and self.name == \"minimax\" else h) * x_dot / n", "return h * x_dot / n",
     ["tests/test_second_order.py", "-k", "objective"]),
    ("WGAN-GP: gradient of ||g|| taken as g", "minigan/gan/penalties.py",
     "coef = xp.where(norms > 0, (norms - 1) / safe, 0) * (2 * lam / n)",
     "coef = xp.where(norms > 0, (norms - 1), 0) * (2 * lam / n)", ["tests/test_second_order.py", "-k", "wgan"]),
    ("trainer: EMA without warm-up", "minigan/gan/trainer.py",
     'decay = min(r["ema"], (1 + self.step) / (10 + self.step))', 'decay = r["ema"]',
     ["tests/test_trainer_oracle.py"]),
    ("trainer: gradient clip never applied", "minigan/gan/trainer.py",
     '            optim.clip_grad_norm(grads, r["grad_clip"])', "            pass", ["tests/test_trainer_oracle.py"]),
    ("trainer: lazy penalty counts G steps", "minigan/gan/trainer.py",
     '(self.step * r["n_critic"] + k) % r["penalty_every"]', 'self.step % r["penalty_every"]',
     ["tests/test_trainer_oracle.py"]),
    ("trainer: penalty weight not multiplied by k", "minigan/gan/trainer.py",
     'weight = r["penalty_weight"] * r["penalty_every"]', 'weight = r["penalty_weight"]',
     ["tests/test_trainer_oracle.py"]),
    ("trainer: weight clip skipped", "minigan/gan/trainer.py",
     '                optim.clip_grad_value(D.parameters(), r["weight_clip"])', "                pass",
     ["tests/test_trainer_oracle.py"]),
    ("trainer: L1 skipped", "minigan/gan/trainer.py",
     '            optim.l1_regularization(net.parameters(), r["l1"], grads)', "            pass",
     ["tests/test_trainer_oracle.py"]),
    ("sampler choice: the score's comparison reversed", "minigan/metrics/evaluate.py",
     'return "raw" if sampler_score(result["raw_g"], k) > sampler_score(result["ema_g"], k) else "ema"',
     'return "raw" if sampler_score(result["raw_g"], k) < sampler_score(result["ema_g"], k) else "ema"',
     ["tests/test_trainer.py", "-k", "sampler"]),
    ("Jacobian truncation keeps the steepest noise", "minigan/gan/truncation.py",
     "        keep = norms <= tau\n", "        keep = norms >= tau\n", ["tests/test_truncation.py", "-k", "bridge"]),
    ("Jacobian norm: the tangent passes miss the last input", "minigan/gan/truncation.py",
     "        for j in range(n):", "        for j in range(n - 1):",
     ["tests/test_truncation.py", "-k", "central_differences"]),
    ("standing statistics: an exponential average, not the mean of the batches", "minigan/gan/trainer.py",
     "                m.momentum = None                 # a cumulative average",
     "                m.momentum = 0.5                  # a cumulative average",
     ["tests/test_trainer.py", "-k", "batchnorm_statistics_of_its_own"]),
    ("DiffAugment: G's gradient not taken back through T", "minigan/gan/trainer.py",
     "dfake = augment_adjoint(dfake.reshape(fake.shape), aug_g)", "dfake = dfake.reshape(fake.shape)",
     ["tests/test_trainer_oracle.py", "-k", "DiffAugment"]),
    ("DiffAugment: cutout square one pixel short", "minigan/gan/augment.py",
     "    in_r = (r >= 0) & (r < int(side[0]))", "    in_r = (r >= 0) & (r < int(side[0]) - 1)",
     ["tests/test_augment.py"]),
    ("collapse warning at every early zero", "minigan/gan/trainer.py",
     'if m["hq_fraction"] == 0 and peak is not None and peak[1] > 0:', 'if m["hq_fraction"] == 0:',
     ["tests/test_trainer.py", "-k", "collapse"]),
    ("standing statistics draw their noise from the training RNG", "minigan/gan/trainer.py",
     "        rng = np.random.default_rng(STANDING_SEED)\n", "        rng = self.rng\n",
     ["tests/test_trainer.py", "-k", "in_training_evaluation_never_changes"]),
    ("an image run never chooses its sampler at the end", "minigan/gan/trainer.py",
     'if lead and r["select_samples"] and (self.ema is not None or self.mixture is not None):',
     'if lead and r["select_samples"] and self.mixture is not None:',
     ["tests/test_trainer.py", "-k", "chooses_its_sampler_at_the_end"]),
    ("malloc tuning ignores MINIGAN_TUNE_MALLOC=0", "minigan/allocator.py",
     'if flag == "0" or _user_tuned(environ)', "if _user_tuned(environ)", ["tests/test_allocator.py"]),
]

# The fused CuPy kernels' CUDA source (ops/_cupy.py), caught by its CPU emulation (tests/cuda_emulator.py),
# which needs a host C++ compiler: without one these are left out, and the run says so.
CUDA_MUTANTS = [
    ("fused col2im: the stride test dropped", "minigan/ops/_cupy.py",
     "            if (th % st_h != 0) continue;\n", "", ["tests/test_cupy_fused.py", "-k", "col2im and emulated"]),
    ("fused BatchNorm: variance over M - 1", "minigan/ops/_cupy.py",
     "const double var = block_sum(ss, buf) / (double)M;", "const double var = block_sum(ss, buf) / (double)(M - 1);",
     ["tests/test_cupy_fused.py", "-k", "batch_norm and emulated"]),
    ("fused Adam: eps inside the square root", "minigan/ops/_cupy.py",
     "const T denom = sqrt(vi) / bc2_sqrt + eps;", "const T denom = sqrt(vi + eps) / bc2_sqrt;",
     ["tests/test_cupy_fused.py", "-k", "adam and emulated"]),
]
if shutil.which("g++") or shutil.which("clang++"):
    MUTANTS += CUDA_MUTANTS


def copy_tree(tmp):
    for part in ("minigan", "tests", "README.md"):
        src = ROOT / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, Path(tmp) / part)


def run_mutant(tmp, name, rel, old, new, tests, shared, timeout=TIMEOUT_S):
    """-> (outcome, seconds, the last lines pytest printed); the copy is restored afterwards.

    outcome is "killed" (the tests failed), "SURVIVED" (they passed), "ERROR n" (pytest exited n: its tests
    never ran, e.g. an import failed or ``-k`` chose none) or "TIMED OUT" (still running after
    ``timeout`` seconds: the whole process group is killed, and what pytest printed, with faulthandler's
    stack dump of any test that ran past FAULTHANDLER_S, comes back so a stall can be diagnosed)."""
    path = Path(tmp) / rel
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"mutant {name!r}: the source to replace occurs {text.count(old)} times in {rel} "
                         f"(expected once): update tools/mutants.py")
    path.write_text(text.replace(old, new))
    env = dict(os.environ, PYTHONPATH=tmp + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MINIGAN_SHARED=str(shared))
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
           "-o", f"faulthandler_timeout={FAULTHANDLER_S}", *tests]
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
        try:
            out, _ = p.communicate(timeout=timeout)
            # pytest exits 1 when tests failed, 0 when all passed; 2-5 mean it never ran them properly
            # (a collection error, a missing import, no test selected): not a kill, and not a survival either
            outcome = {1: "killed", 0: "SURVIVED"}.get(p.returncode, f"ERROR {p.returncode}")
        except subprocess.TimeoutExpired:
            # pytest and anything it started (numba's workers, a stuck BLAS pool) share its new session
            if hasattr(os, "killpg"):
                os.killpg(p.pid, signal.SIGKILL)
            else:
                p.kill()
            out, _ = p.communicate()
            outcome = "TIMED OUT"
    finally:
        path.write_text(text)
    lines = out.strip().splitlines() or [""]
    if outcome == "killed":
        return outcome, time.perf_counter() - t0, lines[-1]
    # a stack dump reads most recent call first: keep its head, where the stalled test's own frames are
    return outcome, time.perf_counter() - t0, "\n".join(lines[:300] if outcome == "TIMED OUT" else lines[-40:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", default="", help="only the mutants whose name contains this")
    ap.add_argument("-j", type=int, default=min(2, os.cpu_count() or 1), help="mutants run at once (one copy each)")
    ap.add_argument("--timeout", type=float, default=TIMEOUT_S,
                    help=f"seconds one mutant's tests may run before it counts as a stall (default {TIMEOUT_S})")
    args = ap.parse_args()
    shared = Path(os.environ.get("MINIGAN_SHARED", ROOT.parent / "shared"))
    chosen = [m for m in MUTANTS if args.k in m[0]]
    if not any(m in MUTANTS for m in CUDA_MUTANTS):
        print(f"mutants: no C++ compiler here, so the {len(CUDA_MUTANTS)} fused-kernel mutants are left out")
    copies = queue.Queue()
    dirs = [tempfile.mkdtemp(prefix="minigan-mutants-") for _ in range(max(1, args.j))]

    def one(mutant):
        tmp = copies.get()
        try:
            return mutant, run_mutant(tmp, *mutant, shared, timeout=args.timeout)
        finally:
            copies.put(tmp)
    survivors, stalled, broken = [], [], []
    try:
        for d in dirs:
            copy_tree(d)
            copies.put(d)
        with concurrent.futures.ThreadPoolExecutor(len(dirs)) as pool:
            for (name, _, _, _, tests), (outcome, secs, tail) in pool.map(one, chosen):
                if outcome == "killed":
                    print(f"killed   {secs:6.1f} s  {name}  ({' '.join(tests)}: {tail})", flush=True)
                    continue
                print(f"{outcome} {secs:6.1f} s  {name}  ({' '.join(tests)}); what pytest printed:\n{tail}",
                      flush=True)
                (survivors if outcome == "SURVIVED" else stalled if outcome == "TIMED OUT" else broken).append(name)
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    killed = len(chosen) - len(survivors) - len(stalled) - len(broken)
    print(f"{killed} of {len(chosen)} mutants killed"
          + (f"; survivors: {survivors}" if survivors else "")
          + (f"; timed out after {args.timeout:g} s (neither killed nor survived: the check fails): {stalled}"
             if stalled else "")
          + (f"; tests that never ran (pytest's exit status was not 0 or 1): {broken}" if broken else ""))
    return 1 if survivors or stalled or broken else 0


if __name__ == "__main__":
    sys.exit(main())
