#!/usr/bin/env bash
# mvbench multiple-choice evaluation (files in the original format under data/eval/mvbench/, see DATA.md).
#   MODEL_PATH=checkpoints/videollamb-llava-1.5-7b bash scripts/eval/mvbench.sh
# Settings (MODEL_PATH, DATA_DIR, OUTPUT_DIR, NUM_FRAMES, PROTOCOL, ...): see run_videoqa.sh.
exec bash "$(dirname "${BASH_SOURCE[0]}")/run_videoqa.sh" mvbench "$@"
