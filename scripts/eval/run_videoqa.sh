#!/usr/bin/env bash
# Multiple-choice video QA over every visible GPU: one chunk per GPU, then merge and score.
#
#   bash scripts/eval/run_videoqa.sh BENCHMARK [extra llava.eval.videoqa flags]
#   (usually through scripts/eval/{egoschema,nextqa,egoplan,mvbench}.sh)
#
# Settings (environment variables):
#   MODEL_PATH   checkpoint folder                  (default: checkpoints/videollamb-llava-1.5-7b)
#   DATA_DIR     test_q.json, test_a.json, videos/  (default: data/eval/BENCHMARK)
#   VIDEO_DIR    the videos                         (default: $DATA_DIR/videos)
#   OUTPUT_DIR   chunk files, merge.jsonl, scores.json (default: runs/eval/BENCHMARK/<model folder name>)
#   NUM_FRAMES   frames per video, uniformly        (default: the benchmark's for a model that samples
#                                                   uniformly, see llava/eval/question_files.py; a model's rate)
#   PROTOCOL     letter | likelihood                (default: letter)
#   PYTHON       interpreter                        (default: python)
# GPUs: those in CUDA_VISIBLE_DEVICES when it is set (empty = none), else all that nvidia-smi lists.
# Without a GPU a single chunk runs on the CPU. A killed run resumes where it stopped when started again.
set -euo pipefail

BENCHMARK=${1:?usage: run_videoqa.sh BENCHMARK [extra flags]}
shift
MODEL_PATH=${MODEL_PATH:-checkpoints/videollamb-llava-1.5-7b}
DATA_DIR=${DATA_DIR:-data/eval/${BENCHMARK}}
VIDEO_DIR=${VIDEO_DIR:-${DATA_DIR}/videos}
OUTPUT_DIR=${OUTPUT_DIR:-runs/eval/${BENCHMARK}/$(basename "${MODEL_PATH}")}
PROTOCOL=${PROTOCOL:-letter}
PYTHON=${PYTHON:-python}

if [[ -n "${CUDA_VISIBLE_DEVICES+set}" ]]; then
    IFS=',' read -r -a GPUS <<< "${CUDA_VISIBLE_DEVICES}"
elif command -v nvidia-smi > /dev/null 2>&1; then
    mapfile -t GPUS < <(nvidia-smi --query-gpu=index --format=csv,noheader 2> /dev/null || true)
else
    GPUS=()
fi

ARGS=(--benchmark "${BENCHMARK}" --model-path "${MODEL_PATH}"
      --question-file "${DATA_DIR}/test_q.json" --answer-file "${DATA_DIR}/test_a.json"
      --video-dir "${VIDEO_DIR}" --output "${OUTPUT_DIR}" --protocol "${PROTOCOL}")
if [[ -n "${NUM_FRAMES:-}" ]]; then
    ARGS+=(--num-frames "${NUM_FRAMES}")
fi

CHUNKS=${#GPUS[@]}
if (( CHUNKS == 0 )); then
    echo "no GPU visible: one chunk on the CPU"
    "${PYTHON}" -m llava.eval.videoqa "${ARGS[@]}" --device cpu --num-chunks 1 --chunk-idx 0 "$@"
    exit $?
fi

echo "${CHUNKS} chunk(s) on GPU(s) ${GPUS[*]}"
PIDS=()
for IDX in "${!GPUS[@]}"; do
    CUDA_VISIBLE_DEVICES=${GPUS[$IDX]} "${PYTHON}" -m llava.eval.videoqa "${ARGS[@]}" \
        --num-chunks "${CHUNKS}" --chunk-idx "${IDX}" --quiet "$@" &
    PIDS+=($!)
done
FAILED=0
for IDX in "${!PIDS[@]}"; do
    if ! wait "${PIDS[$IDX]}"; then
        echo "chunk ${IDX} failed; run this script again to resume it" >&2
        FAILED=1
    fi
done
if (( FAILED )); then
    exit 1
fi
"${PYTHON}" -m llava.eval.videoqa "${ARGS[@]}" --num-chunks "${CHUNKS}" --merge-only "$@"
