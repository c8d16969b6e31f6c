#!/usr/bin/env bash
# The design-time pipeline (Dynamic-HAT steps 2-5) on a CUDA GPU, sized to a few
# minutes of GPU time: latency dataset -> predictor -> sweep -> design report.
# Writes $CONFIG/operating_points_translation_$DEVICE.yaml (on DEVICE=cpu
# operating_points_translation_cpu_torch.yaml: the CPU default is CTranslate2),
# $CONFIG/design_space_reduced_$DEVICE.yaml and $DOCS/pareto_$DEVICE.png
# (CONFIG defaults to config/generated); every step resumes from $RUN when run again.
#
# The latency dataset times as many sub-networks as fit LATENCY_MINUTES (at most
# LATENCY_SAMPLES; LATENCY_MINUTES= empty: exactly LATENCY_SAMPLES). At batch 1 a
# GPU's latency follows the kernel launches, i.e. the layer count, far more than
# the width, which a smaller dataset than a CPU's already shows. The sweep is
# the CPU one (make design-cpu) with fewer constraints and finalists
# (docs/results.md gives its time on an H100).
#
# Needs only the core's Python dependencies (torch, numpy, sentencepiece,
# sacrebleu, safetensors, tqdm, matplotlib, pyyaml, scipy), not ROS: a GPU
# machine's own Python will do (PYTHON=python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DEVICE=${DEVICE:-cuda}
RUN=${RUN:-runs/design}
CONFIG=${CONFIG:-config/generated}
DOCS=${DOCS:-docs}
LATENCY_SAMPLES=${LATENCY_SAMPLES:-1000}
LATENCY_MINUTES=${LATENCY_MINUTES-2}
LATENCY_ARGS=${LATENCY_ARGS:-}  # more latency options, e.g. --threads 4
PREDICTOR_ARGS=${PREDICTOR_ARGS:-}  # more predictor options, e.g. --epochs 500
SWEEP_ARGS=${SWEEP_ARGS:---count 6 --max-finalists 16 --gap 0.05 --per-gap 2 \
  --fill-searches 2 --fill-gap 0.05 --fill-iterations 6 --beams 1 3 \
  --bleu-sentences 500 --bleu-batch-size 64 --random 0}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

cli() { "$PYTHON" -m dyn_dnn_ros.cli "$@"; }
step() {
  local name=$1 began=$SECONDS
  shift
  echo "== $name: $*"
  "$@"
  echo "== $name took $((SECONDS - began)) s"
}

csv=$RUN/latency_$DEVICE.csv
library=$CONFIG/operating_points_translation_$DEVICE.yaml
if [ "$DEVICE" = cpu ]; then
  library=$CONFIG/operating_points_translation_cpu_torch.yaml
fi
# shellcheck disable=SC2086  # the *_ARGS variables are lists of options
{
  step latency cli design latency --device "$DEVICE" --out "$csv" --samples "$LATENCY_SAMPLES" \
    ${LATENCY_MINUTES:+--budget-minutes "$LATENCY_MINUTES"} $LATENCY_ARGS
  step predictor cli design predictor --data "$csv" $PREDICTOR_ARGS
  step sweep cli design sweep --device "$DEVICE" --run-dir "$RUN/sweep_$DEVICE" \
    --predictor "${csv%.csv}.predictor.safetensors" --samples-log "$csv.samples.jsonl" \
    --library "$library" --plot "$DOCS/pareto_$DEVICE.png" \
    $SWEEP_ARGS
  step design-report cli design report --library "$library" \
    --out "$CONFIG/design_space_reduced_$DEVICE.yaml"
}
