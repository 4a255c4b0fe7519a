"""lmms-eval tasks for a multiple-choice benchmark in the original format (test_q.json, test_a.json, videos/): the
same questions `llava.eval.videoqa` answers, scored the same way, from local files (no download), and the same
questions asked in every rotation of their options (circular evaluation).

    python -m llava.data.shapes_dataset --out runs/shapes_mc --num-videos 4 --seed 1 --format mc --quiet
    python -m llava.eval.lmms_eval_task --question-file runs/shapes_mc/test_q.json \\
        --answer-file runs/shapes_mc/test_a.json --video-dir runs/shapes_mc/videos --output runs/lmms_tasks
    python -m lmms_eval --model videollamb --model_args pretrained=checkpoints/videollamb-tiny-shapes,device=cpu \\
        --tasks synthetic_letter,synthetic_likelihood,synthetic_circular --include_path runs/lmms_tasks \\
        --output_path runs/lmms_out

OUT/data.jsonl holds one row per question (question_id, video: an absolute path, question, options, answer, type),
which lmms-eval reads with the `json` dataset builder. Three tasks are written: one per `videoqa --protocol`,
NAME_letter (generate_until: the question and lettered options, the answer read by `extract_choice`, metric acc)
and NAME_likelihood (multiple_choice: the question alone, the option the model scores likeliest, metric acc); and
NAME_circular (generate_until_multi_round: round k asks the lettered prompt with the options rotated by k, as
`llava.eval.niavh` scores its needles; acc: every rotation right, rotation_acc: the share of rotations right). The
hooks the task files name are this module's functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llava.errors import LlavaError, report_error
from llava.eval.answers import extract_choice, letter_prompt, rotations
from llava.eval.question_files import find_video, load_questions
from llava.serve.chat_session import SHORT_MAX_NEW_TOKENS

DATA_FILE = "data.jsonl"
HOOKS = "llava.eval.lmms_eval_task"  # the YAML's !function lines import this module by name


# --- hooks named by the task files ---------------------------------------------------------------------------
def doc_to_visual(doc: dict) -> list[str]:
    return [doc["video"]]


def doc_to_question(doc: dict) -> str:
    return doc["question"]


def doc_to_letter_prompt(doc: dict) -> str:
    return letter_prompt(doc["question"], doc["options"])


def letter_results(doc: dict, results: list[str]) -> dict[str, float]:
    """generate_until: the answer's letter (or option text) read as `videoqa --protocol letter` reads it."""
    return {"acc": float(extract_choice(results[0], doc["options"]) == doc["answer"])}


def doc_to_rotated_prompt(
    doc: dict,
    lmms_eval_specific_kwargs: dict | None = None,
    previous_output: list[str] | None = None,
    round_idx: int | None = None,
    previous_round_info: dict | None = None,
):
    """generate_until_multi_round: without round_idx, the first round's prompt (the options as given); with it,
    lmms-eval's round tuple (visuals, prompt, done, previous_output, round_info): the options rotated by
    round_idx, done once every rotation was asked."""
    turns = rotations(doc["options"], doc["answer"])
    if round_idx is None:
        return letter_prompt(doc["question"], turns[0][0])
    if round_idx >= len(turns):
        return None, None, True, previous_output, previous_round_info
    prompt = letter_prompt(doc["question"], turns[round_idx][0])
    return doc_to_visual(doc), prompt, False, previous_output, previous_round_info


def circular_results(doc: dict, results: list) -> dict[str, float]:
    """generate_until_multi_round: each round's answer read as `letter_results` reads one, against its rotation."""
    answers = results[0] if results and isinstance(results[0], list) else results
    turns = rotations(doc["options"], doc["answer"])
    if len(answers) != len(turns):
        raise ValueError(f"question {doc['question_id']}: {len(answers)} answers for {len(turns)} rotations")
    right = [extract_choice(answer, options) == gold for answer, (options, gold) in zip(answers, turns, strict=True)]
    return {"acc": float(all(right)), "rotation_acc": sum(right) / len(right)}


# --- writing a task folder -----------------------------------------------------------------------------------
def _task_yaml(task: str, output_type: str, lines: list[str]) -> str:
    common = [
        f"task: {task}",
        "dataset_path: json",
        "dataset_kwargs:",
        f"  data_files: {{test: {DATA_FILE}}}",
        "test_split: test",
        f"output_type: {output_type}",
        f"doc_to_visual: !function {HOOKS}.doc_to_visual",
    ]
    return "\n".join(common + lines) + "\n"


def task_files(name: str) -> dict[str, str]:
    """The three task files, by file name."""
    acc = ["metric_list:", "  - metric: acc", "    aggregation: mean", "    higher_is_better: true"]
    generation = [
        "generation_kwargs:",
        f"  max_new_tokens: {SHORT_MAX_NEW_TOKENS}",
        "  do_sample: false",
        "  temperature: 0",
        "  until: []",
    ]
    letter = _task_yaml(
        f"{name}_letter",
        "generate_until",
        [
            f"doc_to_text: !function {HOOKS}.doc_to_letter_prompt",
            "doc_to_target: answer",
            *generation,
            f"process_results: !function {HOOKS}.letter_results",
            *acc,
        ],
    )
    likelihood = _task_yaml(
        f"{name}_likelihood",
        "multiple_choice",
        [
            f"doc_to_text: !function {HOOKS}.doc_to_question",
            "doc_to_choice: options",
            "doc_to_target: answer",
            'target_delimiter: ""',
            *acc,
        ],
    )
    circular = _task_yaml(
        f"{name}_circular",
        "generate_until_multi_round",
        [
            f"doc_to_text: !function {HOOKS}.doc_to_rotated_prompt",
            "doc_to_target: answer",
            *generation,
            f"process_results: !function {HOOKS}.circular_results",
            *acc,
            "  - metric: rotation_acc",
            "    aggregation: mean",
            "    higher_is_better: true",
        ],
    )
    return {
        f"{name}_letter.yaml": letter,
        f"{name}_likelihood.yaml": likelihood,
        f"{name}_circular.yaml": circular,
    }


def write_tasks(question_file: Path, answer_file: Path, video_dir: Path, output: Path, name: str) -> list[Path]:
    """Write OUT/data.jsonl and the task files; every question's video must be found."""
    questions = load_questions(question_file, answer_file)
    rows = [
        {
            "question_id": str(q.question_id),
            "video": str(find_video(video_dir, q.video_name).resolve()),
            "question": q.question,
            "options": list(q.options),
            "answer": q.answer,
            "type": q.type,
        }
        for q in questions
    ]
    output.mkdir(parents=True, exist_ok=True)
    (output / DATA_FILE).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    written = [output / DATA_FILE]
    for file_name, text in task_files(name).items():
        (output / file_name).write_text(text, encoding="utf-8")
        written.append(output / file_name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llava.eval.lmms_eval_task", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--question-file", required=True, type=Path, help="test_q.json")
    parser.add_argument("--answer-file", required=True, type=Path, help="test_a.json")
    parser.add_argument("--video-dir", type=Path, default=None, help="videos (default: videos/ beside the questions)")
    parser.add_argument(
        "--output", required=True, type=Path, help="folder of the task files (lmms-eval's --include_path)"
    )
    parser.add_argument("--name", default="synthetic", help="task name prefix (default synthetic)")
    args = parser.parse_args(argv)
    if not args.name.isidentifier():
        parser.error(f"--name must be letters, digits and underscores, got {args.name!r}")
    try:
        video_dir = args.video_dir or args.question_file.parent / "videos"
        written = write_tasks(args.question_file, args.answer_file, video_dir, args.output, args.name)
    except LlavaError as err:
        return report_error(err)
    print(f"wrote {', '.join(str(path) for path in written)}")
    tasks = ", ".join(file_name.removesuffix(".yaml") for file_name in task_files(args.name))
    print(f"tasks: {tasks} (lmms-eval: --include_path {args.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
