#!/usr/bin/env bash
# Issue 7's GPU figures in as few device calls as possible: install the carried wheels, check the kernels on the
# GPU, time them, time the full-size training steps. Each part's output is printed and kept under $OUT.
#
# On the development machine, once:   ../shared/device/fetch-wheels.sh      (jsonargparse, omegaconf, ... into .whl/)
# Then one device call per group, carrying .whl (each group fits the 10-minute limit of one call):
#   bash benchmarks/gpu_session.sh kernels xsam
#   bash benchmarks/gpu_session.sh psalm
#   bash benchmarks/gpu_session.sh levers         (if a target is missed: what the obvious switches buy)
# Parts: kernels (GPU parity tests + attention_kernels.py), xsam (X-SAM stage 1), psalm (PSALM stage 3, panoptic
# and referring), levers (PSALM stage 3 without the LM's gradient checkpointing; both recipes with the decoders
# compiled). A failing part is reported and the next one still runs; the exit status counts the failures.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/zoo-gpu}
mkdir -p "$out"
if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "no wheels in .whl/: run ../shared/device/fetch-wheels.sh here and carry .whl" >&2
    exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 2
export PYTHONPATH=/tmp/site:$PWD
failures=0

part() {  # part NAME COMMAND...: run, show, keep; count a failure without stopping
    local name=$1
    shift
    echo "== $name: $*"
    if ! "$@" 2>&1 | tee "$out/$name.txt"; then
        echo "== $name FAILED (output in $out/$name.txt)"
        failures=$((failures + 1))
    fi
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$out/device.txt"
python3 -c "import torch, triton, transformers, timm, lightning; print('torch', torch.__version__, '| triton',
triton.__version__, '| transformers', transformers.__version__, '| timm', timm.__version__, '| lightning',
lightning.__version__)" | tee -a "$out/device.txt"

for group in "${@:-kernels}"; do
    case $group in
        kernels)
            part kernel_tests python3 -m pytest -q -p no:cacheprovider tests/test_kernels_triton.py tests/test_kernels.py
            part attention python3 benchmarks/attention_kernels.py
            ;;
        xsam)
            part xsam_stage1 python3 benchmarks/train_step.py --config recipes/xsam/stage1.yaml
            ;;
        psalm)
            part psalm_stage3 python3 benchmarks/train_step.py --config recipes/psalm/stage3.yaml
            part psalm_stage3_referring python3 benchmarks/train_step.py --config recipes/psalm/stage3.yaml --task referring
            ;;
        levers)
            part psalm_stage3_no_lm_checkpointing python3 benchmarks/train_step.py --config recipes/psalm/stage3.yaml \
                --set model.gradient_checkpointing=false
            part xsam_stage1_compiled python3 benchmarks/train_step.py --config recipes/xsam/stage1.yaml \
                --set "model.compile_parts=[pixel_decoder, mask_decoder]"
            ;;
        *)
            echo "unknown part '$group' (kernels, xsam, psalm, levers)" >&2
            failures=$((failures + 1))
            ;;
    esac
done
exit "$failures"
