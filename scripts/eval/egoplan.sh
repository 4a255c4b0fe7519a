#!/usr/bin/env bash
# egoplan multiple-choice evaluation (files in the original format under data/eval/egoplan/, see DATA.md).
#   MODEL_PATH=checkpoints/videollamb-llava-1.5-7b bash scripts/eval/egoplan.sh
# EgoPlan's official protocol ranks the options by likelihood: PROTOCOL=likelihood bash scripts/eval/egoplan.sh
# (the release's script, and the default here, uses the letter prompt.)
# Settings (MODEL_PATH, DATA_DIR, OUTPUT_DIR, NUM_FRAMES, PROTOCOL, ...): see run_videoqa.sh.
exec bash "$(dirname "${BASH_SOURCE[0]}")/run_videoqa.sh" egoplan "$@"
