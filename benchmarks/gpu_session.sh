#!/usr/bin/env bash
# Every GPU check still owed (issues #14 and #12).  A session has 15 minutes of device time in all,
# start-up included (a start took ~30 s on 2026-12-04), and the machine goes back after 30 s idle.
#
# Here, before the calls (the device gets a copy of the working tree, not the git history, and not
# the ../shared beside it):
#     mkdir -p .gpu_carry/shared/data && cp -r ../shared/data/mnist .gpu_carry/shared/data/
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_28_x86_64 -d .gpu_carry/whl mpich      # (mpiexec: the device has mpi4py only)
#     mkdir -p .git/info && (grep -qx '/.gpu_carry/' .git/info/exclude || echo /.gpu_carry/ >> .git/info/exclude)
# Then the device runs, each with carry [".gpu_carry"]:
#     DEADLINE=500 bash benchmarks/gpu_session.sh all   # (timeout 560) the session's first call: every
#                                              # section of tests and bench, shorter limits, all ended by
#                                              # DEADLINE s; 2026-12-04 it took 207 s
#     bash benchmarks/gpu_session.sh tests     # install, versions, every test whose id names cupy
#                                              # (tests/test_cupy.py: parity of every layer, tangents and
#                                              # penalties, optimizers, truncation, standing statistics,
#                                              # GPU->CPU checkpoint; test_cupy_fused.py; bit-identical
#                                              # resume), with the kernels on and off, gradcheck
#     bash benchmarks/gpu_session.sh bench     # gan_step (4 workloads; resnet-mnist with fusion on and
#                                              # off), gemm_rate, ops, penalty_step,
#                                              # dcgan-mnist training picture
#     bash benchmarks/gpu_session.sh quality   # #12's conv rows with quality.py on cupy (PRESETS, SEEDS,
#                                              # FIRST_SEED, STEPS, SET, TRAIN_S, RUNS, PLAIN_TESTS, DRAWS from
#                                              # the environment; see the part)
# Owed at the end of session 25 (one call, the session's only one: start ~30 s + ~590 s):
#     PLAIN_TESTS=1 TRAIN_S=520 PRESETS=dcgan-mnist SEEDS=3 bash benchmarks/gpu_session.sh quality  # (timeout 600)
# What comes back ($OUT, at most 8 files): summary-PART.txt (every section's command, tail and exit
# status), logs-PART.tar.gz (the whole logs, no checkpoints), for bench and all dcgan_mnist_samples.png,
# for quality quality.md (benchmarks/quality.md with the new tables: copy its generated blocks back)
# and runs.tar.gz (each run's config, log and pictures).  A checkpoint (32 MB for dcgan-mnist) does
# not come back (16 MiB a file): a run that has not finished and been scored inside the call is lost.
# Each section is independent: a failing one is logged with its exit status and the script goes on.
# Every section runs with the fused CuPy kernels on (MINIGAN_CUPY_FUSED=1 unless the caller sets it;
# the package's default since the H100 run of 2026-12-05), and each `plain` section
# reruns its check with MINIGAN_CUPY_FUSED=0 (the plain CuPy path, their oracle);
# tests/test_cupy_fused.py compares the two itself.
set -u
part=${1:?usage: gpu_session.sh tests|bench|quality|all}
out=${OUT:-gpu_session_out}
logs=$(mktemp -d)
mkdir -p "$out" && out=$(cd "$out" && pwd)     # (absolute: the quality part tars from another folder)
export MINIGAN_CUPY_FUSED=${MINIGAN_CUPY_FUSED:-1}
export PYTHONUNBUFFERED=1 MINIGAN_SHARED=${MINIGAN_SHARED:-$PWD/.gpu_carry/shared}
summary="$out/summary-$part.txt"
: > "$summary"

deadline=${DEADLINE:-100000}   # seconds after the start by which every section has ended (the part `all`)
section() {   # section NAME TIMEOUT_S COMMAND...: run; keep the whole log; print and keep its tail
    local name=$1 limit=$2
    shift 2
    local left=$((deadline - SECONDS))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 5 ]; then echo "=== $name: skipped, no time left" | tee -a "$summary"; return; fi
    echo "=== $name: $*" | tee -a "$summary"
    local t0=$SECONDS
    timeout "$limit" "$@" > "$logs/$name.log" 2>&1
    local rc=$?
    tail -n "${TAIL:-12}" "$logs/$name.log" | tee -a "$summary"
    echo "--- $name: exit $rc, $((SECONDS - t0)) s" | tee -a "$summary"
}

fused=0
[ -f minigan/ops/_cupy.py ] && fused=1
plain() {     # plain NAME TIMEOUT_S COMMAND...: the same section with the fused kernels off
    local name=$1 limit=$2
    shift 2
    [ $fused = 1 ] && section "${name}_plain" "$limit" env MINIGAN_CUPY_FUSED=0 "$@"
}

versions=(bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import sys, numpy, cupy, torch; print(sys.version.split()[0], \"numpy\", numpy.__version__,
        \"cupy\", cupy.__version__, \"torch\", torch.__version__, torch.cuda.get_device_name())"')  # the device and versions
train_picture() {  # train_picture STEPS TIMEOUT_S: dcgan-mnist on cupy; its last picture and log lines come back
    section train_mnist "$2" python3 -m minigan train --preset dcgan-mnist --backend cupy --steps "$1" --quiet \
        --data-dir "$MINIGAN_SHARED/data/mnist" --out "$logs/dcgan_mnist"
    cp "$logs/dcgan_mnist/samples.png" "$out/dcgan_mnist_samples.png" 2>/dev/null ||      # (cut off: the last step_*.png)
        cp "$(ls "$logs"/dcgan_mnist/samples/step_*.png 2>/dev/null | sort -V | tail -n 1)" "$out/dcgan_mnist_samples.png" 2>/dev/null
    tail -n 3 "$logs/dcgan_mnist/log.jsonl" >> "$summary" 2>/dev/null
}
# every test that runs on cupy: tests/test_cupy.py, tests/test_cupy_fused.py's GPU half, and each
# backend-parametrised test's cupy case (bit-identical resume, two ranks on cupy), eight processes at once
cupy_tests=(python3 -m pytest -q -rs -n 8 --maxfail=40 -p no:cacheprovider tests -k cupy)

python3 -m pip install -q --no-deps --no-build-isolation -e . > "$logs/install.log" 2>&1 || cat "$logs/install.log"
if ls .gpu_carry/whl/*.whl > /dev/null 2>&1; then        # wheels carried along (mpich: mpiexec for the MPI test)
    python3 -m pip install -q --no-index --no-deps .gpu_carry/whl/*.whl >> "$logs/install.log" 2>&1 || cat "$logs/install.log"
fi

if [ "$part" = tests ]; then
    section versions 60 "${versions[@]}"
    [ -f tools/nvrtc_check.py ] && section nvrtc 120 python3 tools/nvrtc_check.py
    TAIL=40 section tests 300 "${cupy_tests[@]}"
    TAIL=40 plain tests 200 "${cupy_tests[@]}"
    section gradcheck 120 python3 -m minigan gradcheck --backend cupy
elif [ "$part" = bench ]; then
    for w in mlp dcgan32 dcgan-mnist; do     # (dcgan-mnist: the preset's nets; its image conv runs as a transposed conv)
        section "step_$w" 120 python3 benchmarks/gan_step.py --workload $w --backend cupy --count-launches
        plain "step_$w" 90 python3 benchmarks/gan_step.py --workload $w --backend cupy --count-launches --no-memory
    done
    for f in on off; do     # the fused layer pairs (minigan/nn/fuse.py, session 35; off on cupy until this has run)
        section "step_resnet_fusion_$f" 120 python3 benchmarks/gan_step.py --workload resnet-mnist --backend cupy \
            --fusion $f --no-memory
    done
    section step_dcgan64 150 python3 benchmarks/gan_step.py --workload dcgan64 --backend cupy --batch 128 --count-launches
    plain step_dcgan64 120 python3 benchmarks/gan_step.py --workload dcgan64 --backend cupy --batch 128 --no-memory
    TAIL=16 section gemm_rate 120 python3 benchmarks/gemm_rate.py --backend cupy --workload dcgan32 --batch 1024
    section step_dcgan32_b1024 120 python3 benchmarks/gan_step.py --workload dcgan32 --backend cupy --batch 1024 --no-memory
    TAIL=22 section ops 120 python3 benchmarks/ops.py --backend cupy
    train_picture 300 200
    TAIL=16 section penalty_step 120 python3 benchmarks/penalty_step.py --backend cupy
elif [ "$part" = all ]; then
    # A session's first device call, when one machine start must cover it all: the checks of `tests`
    # and `bench` in priority order with shorter limits, every section cut to end by $DEADLINE (s).
    deadline=${DEADLINE:-540}
    section nvrtc 60 python3 tools/nvrtc_check.py
    section versions 40 "${versions[@]}"
    TAIL=40 section tests 200 "${cupy_tests[@]}"
    section gradcheck 45 python3 -m minigan gradcheck --backend cupy
    section step_mlp 50 python3 benchmarks/gan_step.py --workload mlp --backend cupy --count-launches --repeats 5 --steps-per-repeat 10
    section step_dcgan32 60 python3 benchmarks/gan_step.py --workload dcgan32 --backend cupy --count-launches --repeats 5 --steps-per-repeat 10
    section step_dcgan64 70 python3 benchmarks/gan_step.py --workload dcgan64 --backend cupy --batch 128 --count-launches --repeats 5 --steps-per-repeat 10
    plain step_dcgan32 45 python3 benchmarks/gan_step.py --workload dcgan32 --backend cupy --count-launches --no-memory --repeats 5 --steps-per-repeat 10
    TAIL=16 section gemm_rate 45 python3 benchmarks/gemm_rate.py --backend cupy --workload dcgan32 --batch 1024
    train_picture 3000 120
    TAIL=16 section penalty_step 60 python3 benchmarks/penalty_step.py --backend cupy
elif [ "$part" = quality ]; then
    # Measured 2026-12-04 on an H200 with the plain CuPy path: dcgan-mnist ~26 ms a step alone, ~30 ms
    # with two runs sharing the GPU, so its default 16,000 steps (~8 min) plus scoring did not fit one
    # call; pass STEPS (a recipe override, say so in the table) or one preset a call.  2026-12-05 on an H100
    # with the fused kernels (and the recipe's lazy R1): ~14 ms a step alone, ~31 ms with three runs at once,
    # so TRAIN_S=520 takes three seeds to the full 16k inside one 600 s call.  Training stops at TRAIN_S s;
    # every run is then scored where it got to (its last checkpoint, every 500 steps; the table names the
    # unfinished runs), since a run left on the machine is lost with it.
    # RUNS=.gpu_runs (a folder .git/info/exclude ignores, so the next call's copy of the tree leaves it) keeps
    # the runs on the machine between calls while it stays warm (30 s idle): a second call with the same
    # RUNS resumes each unfinished run from its last checkpoint (quality.py does), e.g. dcgan-stacked's 40k
    # steps over two calls (not yet tried on a device: the device README says ignored outputs stay between
    # calls; check that the runs.tar.gz logs go on from the first call's steps).  Unset: a fresh temporary
    # folder, gone with the call.
    runs=${RUNS:-$(mktemp -d)}
    mkdir -p "$runs" && runs=$(cd "$runs" && pwd)
    sets=()
    [ -n "${STEPS:-}" ] && sets=(--set "steps=$STEPS")
    read -r -a extra <<< "${SET:-}"    # SET="lr_g=4e-4 lr_d=4e-4": more recipe overrides, split on spaces
    for kv in "${extra[@]}"; do sets+=(--set "$kv"); done  # (not globbed: betas_g=[0.5,0.9] stays as written)
    q=(env MINIGAN_BACKEND=cupy MINIGAN_DATA="$MINIGAN_SHARED/data/mnist" python3 benchmarks/quality.py
       --presets ${PRESETS:-dcgan-mnist} --seeds ${SEEDS:-3} --first-seed ${FIRST_SEED:-0} --runs "$runs")
    # PLAIN_TESTS=1: meanwhile every cupy test with the fused kernels off (the plain path, their oracle; ~45 s
    # on an H100 beside three trainings, 2026-12-05), so that one call covers both
    if [ "${PLAIN_TESTS:-0}" = 1 ]; then
        (MINIGAN_CUPY_FUSED=0 timeout 240 "${cupy_tests[@]}" > "$logs/tests_plain.log" 2>&1
         echo "--- tests_plain (MINIGAN_CUPY_FUSED=0, beside the trainings): exit $?" >> "$logs/tests_plain.log") &
        plain_pid=$!
    fi
    TAIL=40 section quality "${TRAIN_S:-450}" "${q[@]}" --jobs 3 "${sets[@]}"
    if [ -n "${plain_pid:-}" ]; then
        wait "$plain_pid"
        tail -n 40 "$logs/tests_plain.log" | tee -a "$summary"
    fi
    # (timeout stops quality.py, not the trainings it started; only these: a bare pkill -f "minigan train"
    # also killed another job's trainings on a shared machine, session 25)
    pkill -f "minigan train .*$runs/" && sleep 3
    # DRAWS=K: the MNIST runs scored on eval seeds 0..K-1 too (quality.py --draws; one draw's FID moves 9-17 %,
    # its floor ~25 %: quality.md session 43), 100 s of the call for each draw
    TAIL=40 section quality_scored $((100 * ${DRAWS:-1})) "${q[@]}" --from-runs --draws "${DRAWS:-1}"
    cp benchmarks/quality.md "$out/quality.md"
    (cd "$runs" && tar -czf "$out/runs.tar.gz" --exclude='*.npz' .) 2>/dev/null
else
    echo "unknown part $part: tests, bench, quality or all" >&2
    exit 2
fi
tar -czf "$out/logs-$part.tar.gz" --exclude="*.npz" -C "$logs" . && echo "done; whole logs in logs-$part.tar.gz" | tee -a "$summary"
