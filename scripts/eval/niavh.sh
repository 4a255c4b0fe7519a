#!/usr/bin/env bash
# Needle In A Video Haystack on the original grid (40 lengths x 12 depths), one process.
#
#   bash scripts/eval/niavh.sh [extra llava.eval.niavh flags]
#   MODEL_PATH=checkpoints/videollamb-llava-1.5-7b MODALITY=video bash scripts/eval/niavh.sh --haystack-dir ego/
#
# Settings (environment variables):
#   MODEL_PATH   checkpoint folder       (default: empty = the bundled demo model)
#   OUTPUT_DIR   cells/, videos/, summary.json, heatmap_*.png
#                                        (default: runs/niavh/<model folder name>)
#   MODALITY     text,image,video        (default: all three)
#   LENGTHS      seconds, comma list     (default: round(linspace(1, 320, 40)))
#   DEPTHS       percent, comma list     (default: round(linspace(0, 100, 12)))
#   PYTHON       interpreter             (default: python)
# A killed run resumes where it stopped when started again (finished cells are skipped).
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-}
OUTPUT_DIR=${OUTPUT_DIR:-runs/niavh/$(basename "${MODEL_PATH:-videollamb-tiny-shapes}")}
MODALITY=${MODALITY:-text,image,video}
LENGTHS=${LENGTHS:-1,9,17,26,34,42,50,58,66,75,83,91,99,107,116,124,132,140,148,156,165,173,181,189,197,205,214,222,230,238,246,255,263,271,279,287,295,304,312,320}
DEPTHS=${DEPTHS:-0,9,18,27,36,45,55,64,73,82,91,100}
PYTHON=${PYTHON:-python}

ARGS=(--modality "${MODALITY}" --lengths "${LENGTHS}" --depths "${DEPTHS}" --output "${OUTPUT_DIR}")
if [[ -n "${MODEL_PATH}" ]]; then
    ARGS+=(--model-path "${MODEL_PATH}")
fi
exec "${PYTHON}" -m llava.eval.niavh "${ARGS[@]}" "$@"
