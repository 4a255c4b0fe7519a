"""Multiple-choice video QA in the original evaluation format: EgoSchema, NExT-QA, EgoPlan, MVBench, synthetic.

    python -m llava.data.shapes_dataset --out runs/shapes_mc --num-videos 4 --seed 1 --format mc --quiet
    python -m llava.eval.videoqa --benchmark synthetic --question-file runs/shapes_mc/test_q.json \\
        --answer-file runs/shapes_mc/test_a.json --video-dir runs/shapes_mc/videos --output runs/eval_shapes

One process per GPU takes a contiguous chunk (--num-chunks K --chunk-idx i) and appends one JSONL row per
question to OUT/chunk_{i}_of_{K}.jsonl as it goes; a restarted chunk skips the questions already answered.
The last chunk to finish (or --merge-only) writes OUT/merge.jsonl (question-file order) and OUT/scores.json.
Decoding is greedy and nothing is random: two runs write identical files.

--protocol letter (default, the release's): the model sees the question and lettered options and its
answer is read by `llava.eval.answers.extract_choice`. --protocol likelihood (EgoPlan's official protocol):
the model sees the question alone and the option whose text has the lowest mean token cross-entropy as
the reply is chosen. A video that cannot be read is recorded in its row (as an error) and the run goes on;
FFmpeg's log lines about it are silent unless --verbose.

The model, frame sampling and generation options are those of every front end (`llava.serve.options`);
--max-new-tokens defaults to a short answer's length. Frames: a model that samples uniformly is given the
benchmark's frame count (the release's protocol: 16 EgoSchema/EgoPlan, 8 NExT-QA/MVBench, the checkpoint's own for
synthetic); a model whose config records a rate is sampled at that rate; --num-frames, --video-fps and --max-frames
change either. --output-dir is the older name of --output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from llava.errors import LlavaError, VideoError, report_error
from llava.eval import results
from llava.eval.answers import LETTERS, extract_choice, format_table, letter_prompt, score_rows
from llava.eval.question_files import BENCHMARKS, Question, find_video, get_benchmark, load_questions
from llava.logs import set_media_logging
from llava.progress import progress_bar
from llava.serve.chat_session import SHORT_MAX_NEW_TOKENS
from llava.serve.options import (
    add_flag,
    add_inference_options,
    chat_session_from_options,
    check_inference_options,
    frame_sampling,
    generation_settings,
)
from llava.serve.reply_likelihood import option_losses
from llava.video.sampling import FrameSampling

PROTOCOLS = ("letter", "likelihood")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llava.eval.videoqa", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--benchmark", required=True, choices=tuple(BENCHMARKS))
    parser.add_argument("--question-file", required=True, type=Path, help="test_q.json")
    parser.add_argument("--answer-file", required=True, type=Path, help="test_a.json")
    parser.add_argument("--video-dir", type=Path, default=None, help="videos (default: videos/ beside the questions)")
    add_flag(
        parser,
        "--output",
        aliases=("--output-dir",),
        type=Path,
        default=None,
        help="folder of the results: chunk files, run.json, merge.jsonl, scores.json (required)",
    )
    parser.add_argument("--num-chunks", type=int, default=1)
    parser.add_argument("--chunk-idx", type=int, default=0)
    parser.add_argument("--protocol", choices=PROTOCOLS, default="letter")
    parser.add_argument("--merge-only", action="store_true", help="only merge the chunk files and score")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (drawn only on a terminal)")
    add_inference_options(parser, max_new_tokens=SHORT_MAX_NEW_TOKENS)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.num_chunks < 1:
        parser.error(f"--num-chunks must be at least 1, got {args.num_chunks}")
    if not 0 <= args.chunk_idx < args.num_chunks:
        parser.error(f"--chunk-idx must be in [0, {args.num_chunks - 1}], got {args.chunk_idx}")
    if args.output is None:
        parser.error("the following arguments are required: --output")
    check_inference_options(parser, args)
    if args.video_dir is None:
        args.video_dir = args.question_file.parent / "videos"
    return args


def benchmark_sampling(args: argparse.Namespace, model_sampling: FrameSampling) -> FrameSampling:
    """How this run samples: a uniform model at the benchmark's frame count, a rate model at its rate; then the
    flags."""
    count = get_benchmark(args.benchmark).num_frames
    if count is not None and model_sampling.uniform:
        model_sampling = model_sampling.override(num_frames=count)  # keeps the model's rate rule and cap
    return frame_sampling(args, model_sampling)


def run_record(args: argparse.Namespace) -> dict:
    """What the rows depend on; the frame sampling is filled in once the model is loaded (None is not compared)."""
    from llava.serve.chat_session import DEMO_CHECKPOINT

    sampled = args.temperature > 0
    return {
        "benchmark": args.benchmark,
        "model_path": str(args.model_path or DEMO_CHECKPOINT),
        "num_frames": args.num_frames,
        "video_fps": args.video_fps,
        "max_frames": args.max_frames,
        "protocol": args.protocol,
        "conv_mode": args.conv_mode,
        "max_new_tokens": args.max_new_tokens if args.protocol == "letter" else None,
        "temperature": args.temperature if sampled else None,
        "top_p": args.top_p if sampled else None,
    }


# --- answering ---------------------------------------------------------------------------------------------
class Answerer:
    """A ChatSession that encodes each video once, however many questions in a row ask about it."""

    def __init__(self, args: argparse.Namespace):
        self.session = chat_session_from_options(args)
        self.session.sampling = benchmark_sampling(args, self.session.model.config.frame_sampling)
        self.settings = generation_settings(args)
        self.args = args
        self.loaded: Path | None = None

    def _load(self, video: Path) -> None:
        if video != self.loaded:
            self.loaded = None
            self.session.load_video(video)
            self.loaded = video
        self.session.reset()

    def __call__(self, question: Question) -> dict:
        row: dict[str, Any] = {
            "question_id": question.question_id,
            "video_name": question.video_name,
            "type": question.type,
            "answer": question.answer,
        }
        try:
            self._load(find_video(self.args.video_dir, question.video_name))
        except VideoError as err:
            return row | {"pred": None, "output": None, "correct": False, "error": str(err)}
        if self.args.protocol == "likelihood":
            losses = option_losses(self.session, question.question, question.options)
            lowest = min(range(len(losses)), key=losses.__getitem__)
            row |= {"output": LETTERS[lowest], "losses": [round(loss, 6) for loss in losses]}
            pred: int | None = lowest
        else:
            output = self.session.ask(letter_prompt(question.question, question.options), self.settings)
            pred = extract_choice(output, question.options)
            row["output"] = output
        return row | {"pred": pred, "correct": pred == question.answer}


def run_chunk(args: argparse.Namespace, questions: list[Question], record: dict) -> None:
    """Answer this chunk's questions that its file does not hold yet, appending each row as it comes."""
    chunk = questions[results.chunk_slice(len(questions), args.num_chunks, args.chunk_idx)]
    path = results.chunk_path(args.output, args.chunk_idx, args.num_chunks)
    done = results.resume_chunk(path, [q.question_id for q in chunk])
    todo = [q for q in chunk if str(q.question_id) not in done]
    if not todo:
        return
    answer = Answerer(args)
    record |= answer.session.sampling.record()
    results.check_run(args.output, record)
    results.save_run(args.output, record)
    with (
        open(path, "a", encoding="utf-8") as handle,
        progress_bar(
            total=len(chunk),
            initial=len(chunk) - len(todo),
            desc=f"{args.benchmark} chunk {args.chunk_idx}",
            unit="q",
            quiet=args.quiet,
        ) as progress,
    ):
        for question in todo:
            results.append_row(handle, answer(question))
            progress.update()


def merge(args: argparse.Namespace, questions: list[Question], required: bool) -> dict | None:
    """Merge and score when every question has its row; otherwise None (or a DataError when `required`)."""
    rows, missing = results.collect(args.output, args.num_chunks, [q.question_id for q in questions])
    if missing:
        if required:
            shown = ", ".join(repr(m) for m in missing[:5])
            raise LlavaError(
                f"{len(missing)} of {len(questions)} questions have no row in {args.output} "
                f"(first: {shown}); run the missing chunks (--num-chunks {args.num_chunks})"
            )
        return None
    run = results.load_run(args.output)
    sampling = {key: run[key] for key in ("num_frames", "video_fps", "max_frames") if run.get(key) is not None}
    scores = {
        "benchmark": args.benchmark,
        **score_rows(rows, get_benchmark(args.benchmark).group_of),
        "model_path": run["model_path"],
        **sampling,
        "protocol": run["protocol"],
    }
    results.write_merge(args.output, rows, scores)
    return scores


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_media_logging(args.verbose)
    try:
        questions = load_questions(args.question_file, args.answer_file)
        record = run_record(args)
        results.check_run(args.output, record)
        if not args.merge_only:
            if not args.video_dir.is_dir():
                raise LlavaError(f"--video-dir {args.video_dir}: no such folder")
            args.output.mkdir(parents=True, exist_ok=True)
            run_chunk(args, questions, record)
        scores = merge(args, questions, required=args.merge_only)
    except LlavaError as err:
        return report_error(err)
    if scores is None:
        print(
            f"chunk {args.chunk_idx} of {args.num_chunks} done; merge once every chunk has finished "
            "(or run with --merge-only)"
        )
        return 0
    print(format_table(scores))
    print(f"wrote {args.output / 'merge.jsonl'} and {args.output / 'scores.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
