#!/usr/bin/env bash
# Train the bundled demo model from scratch on a CPU (about an hour on 2 cores), then measure it:
#   bash scripts/train_tiny_demo.sh [WORK_DIR] [OUT_DIR]
# Synthetic data, a sentencepiece tokenizer, tower pretraining, then llava.train.train on a scene-count curriculum
# and a needle stage; then held-out scores, the needle benchmark (with and without the memory), the model card.
set -euo pipefail
WORK_DIR=${1:-runs/tiny-demo}
OUT_DIR=${2:-checkpoints/videollamb-tiny-shapes}
export HF_HUB_OFFLINE=1
PY=${PY:-python}
[ -x .venv/bin/python ] && [ "$PY" = python ] && PY=.venv/bin/python
"$PY" -m llava.train.tiny_demo --work "$WORK_DIR" --out "$OUT_DIR"
"$PY" -m llava.eval.synthetic_scores --model-path "$OUT_DIR" --seed 1001 --num-videos 40 --out "$OUT_DIR/scores.json"
"$PY" -m llava.eval.synthetic_scores --model-path "$OUT_DIR" --seed 1001 --num-videos 40 --ablate-memory \
    --out "$OUT_DIR/scores_ablated.json"
NIAVH=(--model-path "$OUT_DIR" --modality image,video --lengths 30,60,90,120,150,180,210,240,270,300
       --depths 0,20,40,60,80,100 --scoring exact --sample-fps 1 --cache-dir "$WORK_DIR/niavh_videos" --quiet)
"$PY" -m llava.eval.niavh "${NIAVH[@]}" --output-dir "$WORK_DIR/niavh"
"$PY" -m llava.eval.niavh "${NIAVH[@]}" --ablate-memory --output-dir "$WORK_DIR/niavh_ablated"
cp "$WORK_DIR/niavh/summary.json" "$OUT_DIR/niavh.json"
cp "$WORK_DIR/niavh_ablated/summary.json" "$OUT_DIR/niavh_ablated.json"
"$PY" -m llava.train.model_card "$OUT_DIR"
