#!/usr/bin/env bash
# Train the bundled demo model from scratch on a CPU (about 70 minutes on a quiet 2-core machine, by its parts'
# times; the minutes of each part land in OUT_DIR/training_summary.json):
#   bash scripts/train_tiny_demo.sh [WORK_DIR] [OUT_DIR]
# Synthetic data, a sentencepiece tokenizer, tower pretraining, SceneTilling's threshold for that tower, then
# llava.train.train on the needle question, a scene-count curriculum, long videos at 1 fps, the counting stage
# (the LLM reads every segment's memory) and the formats stage (lettered prompts answered in the option's words);
# then the scores and the model card. The lettered stage: python -m llava.train.tiny_demo ... --lettered
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
