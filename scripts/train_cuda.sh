#!/usr/bin/env bash
# A whole SuperTransformer training on one CUDA GPU, sized to about ten minutes:
# micro-batches four times the CPU default, bf16 autocast (the trainer's default
# on CUDA), validation after every epoch, early stopping on the mean greedy BLEU
# of the largest and smallest sub-networks, and the best snapshots averaged into
# $RUN/model.safetensors, next to history.json, history.csv and learning_curve.png.
#
# Running it again continues the run in $RUN where it stopped; Ctrl-C (or
# SIGTERM) finishes the step, saves a checkpoint and exits. MINUTES counts the
# wall time of all runs together. NPROC=N trains on N GPUs of one machine under
# torchrun (DistributedDataParallel); every GPU then takes its own micro-batch.
#
# Needs the train split ($CORPUS/train.en and .de, which
# `dyn-dnn-ros translation corpus` builds) and only the core's Python
# dependencies (torch, sentencepiece, sacrebleu, safetensors, tqdm, matplotlib,
# pyyaml), not ROS: a GPU machine's own Python will do (PYTHON=python3).
# torch.compile is not used: every sub-network shape is a new graph, so the
# sandwich rule would recompile on nearly every step.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DEVICE=${DEVICE:-cuda}
NPROC=${NPROC:-1}
RUN=${RUN:-runs/train_cuda}
CORPUS=${CORPUS:-runs/translation/corpus}  # where `dyn-dnn-ros translation corpus` writes
SPACE=${SPACE:-config/design_space.yaml}
SPM=${SPM:-models/translation/spm.model}
MINUTES=${MINUTES:-10}
PRESET=${PRESET:---max-tokens 16384 --lr 1e-3 --warmup 400 --random-subnets 2 --epochs 100 \
  --patience 8 --average 5 --valid-sentences 300 --checkpoint-minutes 2 --log-every 20}
TRAIN_ARGS=${TRAIN_ARGS:-}  # more options, appended (later ones win), e.g. --max-steps 3
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

for side in en de; do
  if [[ ! -f $CORPUS/train.$side ]]; then
    echo "train_cuda.sh: $CORPUS/train.$side is missing; build the corpus first" \
      "(dyn-dnn-ros translation corpus)" >&2
    exit 2
  fi
done

launcher=("$PYTHON")
if ((NPROC > 1)); then
  launcher=("$PYTHON" -m torch.distributed.run --standalone --nproc-per-node "$NPROC")
fi
began=$SECONDS
# shellcheck disable=SC2086  # PRESET and TRAIN_ARGS are lists of options
"${launcher[@]}" -m dyn_dnn_ros.cli translation train --device "$DEVICE" --out "$RUN" \
  --corpus-dir "$CORPUS" --space "$SPACE" --spm "$SPM" --max-minutes "$MINUTES" \
  $PRESET $TRAIN_ARGS
echo "== train_cuda.sh took $((SECONDS - began)) s; see $RUN/history.json"
