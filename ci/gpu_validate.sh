#!/usr/bin/env bash
# One-shot GPU validation (issue: GPU validation and tuning), run from the repository root on a
# machine with an NVIDIA GPU. It installs dlgpu without touching the machine's torch/triton/cupy,
# then: versions -> gpu-marked tests -> compute-sanitizer over the GPU tests of the conv, pooling
# and recurrent kernels -> the bench tool at paper sizes -> the side-by-side GPU benchmark.
# Logs and tables go to $OUT (default: benchmarks/results/gpu-run); the last lines printed are a
# summary. Never changes the GPU's settings.
#
#   OUT=/some/dir bash ci/gpu_validate.sh [quick]
#   STEPS="install info nvrtc tests_gpu" bash ci/gpu_validate.sh   # only these steps (names below)
#
# A lent GPU runs one command for at most 10 minutes, so run the script in pieces with STEPS, e.g.
# "install info nvrtc tests_gpu", then "install sanitizer_memcheck", "install sanitizer_racecheck",
# "install bench", "install gpu_bench", "install tests_all" (install is quick and makes each piece
# stand alone on a fresh machine). STEP_TIMEOUT (seconds, default 560) stops a step that runs long.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-benchmarks/results/gpu-run}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
MODE=${1:-full}
status=()

STEPS=${STEPS:-}
STEP_TIMEOUT=${STEP_TIMEOUT:-560}

step() {  # step NAME COMMAND...: run (unless STEPS leaves it out), tee the log, remember the exit status
    local name=$1; shift
    if [ -n "$STEPS" ] && [[ " $STEPS " != *" $name "* ]]; then return 0; fi
    echo "=== $name: $*"
    local t0=$SECONDS
    timeout "$STEP_TIMEOUT" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    status+=("$name rc=$rc $((SECONDS - t0))s")
}

# dlgpu itself only: the machine's torch, triton and cupy stay as they are
step install $PY -m pip install -q --no-deps --no-build-isolation -e ".[test]"
step info $PY -m dlgpu.cli info
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv > "$OUT/nvidia-smi.csv" 2>&1

step nvrtc $PY ci/nvrtc_check.py  # every module through NVRTC as CuPy compiles it (no launch yet)
step tests_gpu $PY -m pytest -q -m gpu -p no:cacheprovider --junitxml="$OUT/tests_gpu.xml"
if [ "$MODE" = full ]; then
    # the whole suite on the GPU machine (CPU backends too: numba on 16 cores)
    step tests_all $PY -m pytest -q -x -p no:cacheprovider
fi

if command -v compute-sanitizer > /dev/null; then
    for tool in memcheck racecheck; do
        step "sanitizer_$tool" compute-sanitizer --tool "$tool" --target-processes all --error-exitcode 3 \
            $PY -m pytest -q -m gpu -p no:cacheprovider \
            tests/triton/test_conv.py tests/triton/test_pooling.py tests/triton/test_lstm.py tests/triton/test_gru.py \
            tests/cuda
    done
fi

step bench $PY -m dlgpu.cli bench --sizes paper --csv "$OUT/bench.csv" --json "$OUT/bench.json" --plot "$OUT/bench.png"
step gpu_bench $PY benchmarks/gpu_bench.py --csv "$OUT/gpu_bench.csv" --md "$OUT/gpu_bench.md"

echo "=== summary"
printf '%s\n' "${status[@]}" | tee "$OUT/summary.txt"
