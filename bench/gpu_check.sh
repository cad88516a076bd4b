#!/usr/bin/env bash
# The GPU check of issue 14 as one script, for a machine with one CUDA GPU and PyTorch/Lightning installed but no
# network (wheels of our other dependencies in .whl/, made with `pip download --no-deps --only-binary=:all:` for the
# machine's Python, or `pip wheel` for sdist-only ones: hydra-core, omegaconf, antlr4-python3-runtime, pydantic,
# pydantic-core, annotated-types, typing-inspection, pydantic-settings, python-dotenv, pyod, suod, combo, lightgbm,
# shap, slicer): the GPU tests, then bench/train_step.py's device mode on 1,000,000 synthetic loans. Logs go to $OUT
# (default ./gpu_check).
#
#   bash bench/gpu_check.sh            # LOANS=200000 bash bench/gpu_check.sh for a quicker look
set -u
OUT=${OUT:-gpu_check}
LOANS=${LOANS:-1000000}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 CI=true

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    nproc
    $PYTHON -c "import torch, lightning, torchmetrics; print('torch', torch.__version__, 'lightning', lightning.__version__, 'torchmetrics', torchmetrics.__version__, 'cuda', torch.cuda.is_available())"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# GPU tests and the sampler guarantees (both samplers), a couple of minutes at most.
timeout 150 $PYTHON -m pytest -q -p no:randomly tests/test_gpu.py tests/test_sampler.py >"$OUT/pytest.txt" 2>&1
echo "pytest exit $?"; tail -3 "$OUT/pytest.txt"

# The bench: auto batch vs batch 1024 (quality), two more quality variants, then speed at the auto batch and others.
timeout "${BENCH_TIMEOUT:-480}" $PYTHON bench/train_step.py --device cuda --loans "$LOANS" --work /tmp/gpu_check \
    --variant "schedule.min_epoch_steps=30" --variant "schedule.accelerator_batch_size=65536" \
    --speed-batches 1024 65536 >"$OUT/bench.txt" 2>&1
echo "bench exit $?"
grep -v "│\|━\|─\|┃\|┏\|┗\|┡" "$OUT/bench.txt" | tail -20
