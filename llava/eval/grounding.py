"""Temporal grounding of answers: does an answer's best evidence span overlap the scene the question is about?

    python -m llava.eval.grounding --seed 2001 --num-videos 20
    python -m llava.eval.grounding --seed 2001 --num-videos 20 --ablate-memory --methods without

Freshly generated held-out synthetic videos (6 to 16 scenes by default) are asked questions about one scene each:
the first scene, the last scene, scene n, the caption of the whole video (its last scene), and when the object of
exactly one scene was shown (`when`). For every evidence method (`llava.serve.evidence.SCORERS`) and every
question, the best evidence span of the model's own reply (and, as a diagnostic, of the true answer) is compared
with the true scene's span in seconds: recall at IoU >= 0.5 and mean IoU, overall and per question kind
("segments"/"best_possible": the best any segment's span reaches, the ceiling SceneTilling's cuts and the sampled
frames set), and the accuracy of the replies (a `when` reply is right when the model wrote the time placeholder;
`when_absent` questions, about an object the video never shows, are asked for this accuracy alone: a model that
writes a time whatever the object scores well on `when` and badly there).
"time_answers" scores the times the answers to `when` questions state in words (the session fills the placeholder
from the evidence, method `llava.serve.time_answers.TIME_EVIDENCE_METHOD`): the first span an answer states
against the true scene (IoU 0 for an answer that states none). With --ablate-memory the bridge memory is reset at
every segment. --output writes the scores as JSON. On a shared CPU, one torch thread (OMP_NUM_THREADS=1) runs
these small passes many times faster.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llava.data import shapes_dataset
from llava.errors import LlavaError, report_error
from llava.eval.results import report_scores
from llava.eval.shapes_scores import normalise
from llava.progress import progress_bar
from llava.serve.chat_session import ChatSession
from llava.serve.evidence import SCORERS, answer_evidence
from llava.serve.options import add_flag, add_sampling_options, check_sampling_options, frame_sampling
from llava.serve.time_answers import spans_in

KINDS = ("first_scene", "last_scene", "nth_scene", "caption", "when")
IOU_THRESHOLD = 0.5
BEST_POSSIBLE = "best_possible"  # the segment whose span overlaps the true scene most: what any method could reach
WORDS = "words"  # the source of the rows that score the times a `when` answer states
ANSWERS = "answers"  # the source of the rows that say whether the model's reply was right
ABSENT = "when_absent"  # asked too, for its answers' accuracy alone: a time written for an object never shown


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two time spans (start, end); 0 when both are empty."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def scene_asked(kind: str, question: str, captions: Sequence[str]) -> int:
    """The index of the scene a question of `kind` is about, given the scenes' captions (first, last, n-th scene;
    caption: the last; when: the one scene showing the object asked about)."""
    template = shapes_dataset.TEMPLATES.get(kind, "")
    if kind == "first_scene":
        return 0
    if kind in ("last_scene", "caption"):
        return len(captions) - 1
    if kind == "nth_scene":
        for index in range(len(captions)):
            if question == template.format(n=shapes_dataset.number_word(index + 1)):
                return index
    if kind == "when":
        shown = [index for index, caption in enumerate(captions) if question == template.format(caption=caption)]
        if len(shown) == 1:
            return shown[0]
    raise ValueError(f"not a question about one scene: {kind} {question!r}")


def stated_iou(answer: str, truth: tuple[float, float]) -> float:
    """The IoU of the first time span an answer states in words with `truth`; 0 when it states none."""
    spans = spans_in(answer)
    return iou(spans[0], truth) if spans else 0.0


def summarise(rows: Sequence[dict]) -> dict:
    """Recall at IoU >= 0.5 and mean IoU of rows with an "iou"."""
    ious = np.array([row["iou"] for row in rows], dtype=np.float64)
    if not ious.size:
        return {"questions": 0, "recall_at_0_5": None, "mean_iou": None}
    return {
        "questions": int(ious.size),
        "recall_at_0_5": float(np.mean(ious >= IOU_THRESHOLD)),
        "mean_iou": float(ious.mean()),
    }


def grounding_rows(session: ChatSession, folder: Path, methods: Sequence[str]) -> list[dict]:
    """One row per (question, method, answer source): the best evidence span's IoU with the true scene."""
    truth = {video["video"]: video for video in json.loads((folder / "truth.json").read_text())["videos"]}
    questions = json.loads((folder / "train.json").read_text())
    rows, loaded = [], None
    for item in progress_bar(questions, desc="questions", unit="question"):
        video = truth[item["video"]]
        if loaded != item["video"]:
            session.load_video(folder / item["video"])
            loaded = item["video"]
        question = item["conversations"][0]["value"].split("\n", 1)[1]
        true_answer = item["conversations"][1]["value"]
        session.reset()
        answer = session.ask(question)
        reply = session.time_fill.reply if session.time_fill is not None else answer  # as the model wrote it
        correct = normalise(reply) == normalise(true_answer)
        rows.append(dict(kind=item["kind"], method=ANSWERS, source=ANSWERS, correct=correct))
        if item["kind"] == ABSENT:
            continue
        scenes = video["scenes"]
        scene = scenes[scene_asked(item["kind"], question, [s["caption"] for s in scenes])]
        truth_span = (scene["start"], scene["end"])
        segments = session.segments
        assert segments is not None  # loaded with the frames' times
        closest = max(iou(span, truth_span) for span in segments.spans)
        rows.append(dict(kind=item["kind"], method=BEST_POSSIBLE, source="segments", iou=closest))
        if item["kind"] == "when":
            rows.append(dict(kind=item["kind"], method="answer", source=WORDS, iou=stated_iou(answer, truth_span)))
        for source, text in (("model", reply), ("truth", true_answer)):
            for method in methods:
                best = answer_evidence(session, segments, question, text, method)[0]
                overlap = iou((best.start, best.end), truth_span)
                rows.append(dict(kind=item["kind"], method=method, source=source, iou=overlap))
    return rows


def scores_of(rows: Sequence[dict]) -> dict:
    """Per answer source and method: overall and per kind; the best any segment's span could do; the accuracy of
    the model's answers, overall and per kind (when_absent included); the times the `when` answers state
    ("time_answers")."""
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        if row["source"] not in (WORDS, ANSWERS):
            grouped[row["source"], row["method"]].append(row)
    scores: dict = {}
    for (source, method), group in grouped.items():
        per_kind = {kind: summarise([r for r in group if r["kind"] == kind]) for kind in KINDS}
        scores.setdefault(source, {})[method] = summarise(group) | {"per_kind": per_kind}
    questions = [r for r in rows if r["source"] == ANSWERS]
    scores["answer_accuracy"] = accuracy(questions) | {
        "per_kind": {kind: accuracy([r for r in questions if r["kind"] == kind]) for kind in (*KINDS, ABSENT)}
    }
    scores["time_answers"] = summarise([r for r in rows if r["source"] == WORDS])
    return scores


def accuracy(rows: Sequence[dict]) -> dict:
    return {"questions": len(rows), "accuracy": float(np.mean([r["correct"] for r in rows])) if rows else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default=None, help="checkpoint folder (default: the bundled demo model)")
    parser.add_argument("--seed", type=int, default=2001, help="seed of the held-out videos (training used 0-3)")
    parser.add_argument("--num-videos", type=int, default=20)
    parser.add_argument("--min-scenes", type=int, default=6)
    parser.add_argument("--max-scenes", type=int, default=16)
    parser.add_argument("--methods", default=",".join(SCORERS), help=f"comma list of: {', '.join(SCORERS)}")
    parser.add_argument("--ablate-memory", action="store_true", help="reset the bridge memory at every segment")
    add_sampling_options(parser)
    add_flag(parser, "--output", type=Path, default=None, help="write the scores as JSON here")
    args = parser.parse_args(argv)
    check_sampling_options(parser, args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in SCORERS]
    if unknown or not methods:
        parser.error(f"unknown evidence method(s) {', '.join(unknown) or '(none)'}; valid: {', '.join(SCORERS)}")
    if args.num_videos < 1:
        parser.error(f"--num-videos must be at least 1, got {args.num_videos}")
    if not 1 <= args.min_scenes <= args.max_scenes:
        parser.error(f"need 1 <= --min-scenes <= --max-scenes, got {args.min_scenes} and {args.max_scenes}")
    try:
        session = ChatSession.from_pretrained(args.model_path, device="cpu")
        session.sampling = frame_sampling(args, session.sampling)
        session.model.set_memory_ablation(args.ablate_memory)
        with tempfile.TemporaryDirectory() as tmp:
            shapes_dataset.main(
                ["--out", tmp, "--num-videos", str(args.num_videos), "--seed", str(args.seed)]
                + ["--min-scenes", str(args.min_scenes), "--max-scenes", str(args.max_scenes)]
                + ["--kinds", ",".join((*KINDS, ABSENT)), "--quiet"]
            )
            scores = scores_of(grounding_rows(session, Path(tmp), methods))
    except LlavaError as err:
        return report_error(err)
    scores |= {"seed": args.seed, "num_videos": args.num_videos, "ablate_memory": args.ablate_memory}
    report_scores(scores, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
