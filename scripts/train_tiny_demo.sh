#!/usr/bin/env bash
# Train the bundled demo model from scratch on a CPU (on a quiet 2-core machine: 55 minutes, timed before the
# lettered stage was added, plus about 35 for that stage):
#   bash scripts/train_tiny_demo.sh [WORK_DIR] [OUT_DIR]
# Synthetic data, a sentencepiece tokenizer, tower pretraining, then llava.train.train on a scene-count curriculum,
# long videos at 1 fps, and the lettered prompt.
set -euo pipefail
WORK_DIR=${1:-runs/tiny-demo}
OUT_DIR=${2:-checkpoints/videollamb-tiny-shapes}
export HF_HUB_OFFLINE=1
PY=${PY:-python}
[ -x .venv/bin/python ] && [ "$PY" = python ] && PY=.venv/bin/python
"$PY" -m llava.train.tiny_demo --work "$WORK_DIR" --output "$OUT_DIR"
"$PY" -m llava.eval.shapes_scores --model-path "$OUT_DIR" --seed 1001 --num-videos 40 --output "$OUT_DIR/scores.json"
"$PY" -m llava.eval.shapes_scores --model-path "$OUT_DIR" --seed 1001 --num-videos 40 --ablate-memory \
    --output "$OUT_DIR/scores_ablated.json"
"$PY" -m llava.train.model_card "$OUT_DIR"
