"""Data sets from the synthetic world (`llava.data.shapes_world`): videos of scenes with ground truth and questions.

Videos are written as h264 mp4 files together with instruction JSON in the original LLaVA conversation format
(or the original multiple-choice evaluation format) and a truth.json holding every scene's frames, seconds and
content. Question kinds: a caption, the first / last / n-th scene, the scene count, which of two came first, and
on request: the object flashed for a moment at the centre, like the needles of `llava.eval.niavh`
(brief_object); when an object shown in exactly one scene was shown (when), answered with the time placeholder
`llava.constants.TIME_PLACEHOLDER` that the serving session fills with the answer's best evidence span in
seconds (the LLM never sees clock times; the truth is that scene's span in truth.json); and the same question about
an object the video never shows (when_absent), answered "It was not shown.", so that writing the placeholder
depends on the video. The two `when` kinds are never multiple choice (their options would be times): --format mc
refuses them and --mc-ratio leaves them open. Their rows name the object asked about for judgement (`judgements`:
right for `when`, wrong for `when_absent`; trained with --judge_options, `llava.data.option_judgement`).

Run (writes data/shapes/videos/*.mp4, train.json and truth.json):
    python -m llava.data.shapes_dataset --out data/shapes --num-videos 200 --seed 0
Multiple-choice evaluation files (test_q.json, test_a.json):
    python -m llava.data.shapes_dataset --out data/shapes_mc --num-videos 50 --seed 1 --format mc
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llava.atomic import write_json_atomic
from llava.constants import TIME_PLACEHOLDER
from llava.data.shapes_world import (
    ALL_CAPTIONS,
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    VideoSpec,
    add_flash,
    near_captions,
    render_frames,
    sample_video_spec,
    video_rng,
)

# --- questions: every template in one place ------------------------------------------------------------
TEMPLATES: dict[str, str] = {
    "caption": "Describe the video in one sentence.",
    "first_scene": "What was in the first scene?",
    "last_scene": "What was in the last scene?",
    "nth_scene": "What was in scene {n}?",
    "count": "How many scenes are there?",
    "order": "Which came first, {a} or {b}?",
    "brief_object": "What object appeared briefly in the video?",
    "when": "When was {caption} shown?",
    "when_absent": "When was {caption} shown?",
}
OPEN_ONLY: tuple[str, ...] = ("when", "when_absent")  # never multiple choice
WHEN_ANSWER = f"It was shown {TIME_PLACEHOLDER}."
NOT_SHOWN_ANSWER = "It was not shown."
# On request only, so that a data set generated with the defaults stays what it was: brief_object adds a flashed
# object to every video, and the `when` kinds need the serving session to fill their placeholder.
KINDS: tuple[str, ...] = tuple(k for k in TEMPLATES if k not in ("brief_object", *OPEN_ONLY))  # the default kinds
ALL_KINDS: tuple[str, ...] = tuple(TEMPLATES)
VIDEO_TOKEN = "<video>"
LETTERS = "ABCD"
# What a multiple-choice training row is answered with: its letter (what the original prompt asks for), or the
# option's own words (which every scorer of `llava.eval` reads as that option: `llava.eval.answers.extract_choice`).
MC_REPLIES: tuple[str, ...] = ("letter", "option")
MC_PROMPT = (
    "{question}\nA. {0}\nB. {1}\nC. {2}\nD. {3}\nAnswer with the option's letter from the given choices directly."
)
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_word(n: int) -> str:
    """1 -> "one", 21 -> "twenty one" (1 to 99)."""
    if not 1 <= n <= 99:
        raise ValueError(f"number_word supports 1 to 99, got {n}")
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")


# --- questions -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    """An open question with its answer; `hard_negatives` (wrong answers from the same video) and `pool`
    (any other wrong answers of the same kind) feed the multiple-choice distractors."""

    kind: str
    text: str
    answer: str
    hard_negatives: tuple[str, ...] = ()
    pool: tuple[str, ...] = ()
    judged: tuple[tuple[str, bool], ...] = ()  # texts of the question to judge right or wrong in training


def _about_scene(spec: VideoSpec, kind: str, index: int, text: str) -> Question:
    answer = spec.scenes[index].caption
    others = tuple(dict.fromkeys(s.caption for s in spec.scenes if s.caption != answer))
    return Question(kind, text, answer, others, tuple(c for c in ALL_CAPTIONS if c != answer))


def make_question(spec: VideoSpec, kind: str, rng: np.random.Generator, near_miss: bool = False) -> Question | None:
    """One question of `kind` about `spec` (None where the kind does not apply, e.g. order with one caption);
    `near_miss`: a `when_absent` object one attribute from a shown one (`_when_question`)."""
    n = len(spec.scenes)
    if kind in ("caption", "last_scene"):
        return _about_scene(spec, kind, n - 1, TEMPLATES[kind])
    if kind == "first_scene":
        return _about_scene(spec, kind, 0, TEMPLATES[kind])
    if kind == "nth_scene":
        index = int(rng.integers(n))
        return _about_scene(spec, kind, index, TEMPLATES[kind].format(n=number_word(index + 1)))
    if kind == "count":
        pool = tuple(number_word(k) for k in range(1, max(10, n + 3) + 1) if k != n)
        return Question(kind, TEMPLATES[kind], number_word(n), (), pool)
    if kind == "order":
        first_seen: dict[str, int] = {}
        for index, scene in enumerate(spec.scenes):
            first_seen.setdefault(scene.caption, index)
        if len(first_seen) < 2:
            return None
        a, b = (str(c) for c in rng.choice(list(first_seen), size=2, replace=False))
        answer, other = (a, b) if first_seen[a] < first_seen[b] else (b, a)
        pool = tuple(c for c in ALL_CAPTIONS if c not in (a, b))
        return Question(kind, TEMPLATES[kind].format(a=a, b=b), answer, (other,), pool)
    if kind == "brief_object":
        if spec.flash is None:
            return None
        answer = spec.flash.caption
        scenes = tuple(dict.fromkeys(s.caption for s in spec.scenes))
        return Question(kind, TEMPLATES[kind], answer, scenes, tuple(c for c in ALL_CAPTIONS if c != answer))
    if kind in OPEN_ONLY:
        return _when_question(spec, kind, rng, near_miss)
    raise ValueError(f"unknown question kind {kind!r}; valid kinds: {', '.join(ALL_KINDS)}")


def _when_question(spec: VideoSpec, kind: str, rng: np.random.Generator, near_miss: bool = False) -> Question | None:
    """When an object shown in exactly one scene was shown ("when"), or one the video never shows, not even as its
    flash ("when_absent"); None where there is none. With `near_miss` the absent object is one attribute from a
    scene's object where one such is not shown (a hard negative: the same colour and another shape, or the reverse)."""
    captions = [scene.caption for scene in spec.scenes]
    if kind == "when":
        candidates, answer = [c for c in dict.fromkeys(captions) if captions.count(c) == 1], WHEN_ANSWER
    else:
        shown = {*captions, *([spec.flash.caption] if spec.flash else [])}
        candidates, answer = [c for c in ALL_CAPTIONS if c not in shown], NOT_SHOWN_ANSWER
        if near_miss:
            near = [c for c in candidates if any(c in near_captions(s) for s in dict.fromkeys(captions))]
            candidates = near or candidates
    if not candidates:
        return None
    caption = candidates[int(rng.integers(len(candidates)))]
    return Question(kind, TEMPLATES[kind].format(caption=caption), answer, judged=((caption, kind == "when"),))


def to_multiple_choice(
    question: Question, rng: np.random.Generator, num_options: int = 4, near_miss: bool = False
) -> tuple[list[str], int]:
    """Options (hard negatives first, then the pool, each shuffled) and the correct one's uniform index; with
    `near_miss`, in pairs one attribute apart (`near_pairs`)."""
    hard = [question.hard_negatives[i] for i in rng.permutation(len(question.hard_negatives))]
    pool = [question.pool[i] for i in rng.permutation(len(question.pool))]
    wrong = [w for w in dict.fromkeys(hard + pool) if w != question.answer]
    if near_miss:
        wrong = near_pairs(question.answer, wrong, rng)
    wrong = wrong[: num_options - 1]
    if len(wrong) < num_options - 1:
        raise ValueError(f"not enough distractors for {question.kind!r}: {wrong}")
    index = int(rng.integers(num_options))
    return wrong[:index] + [question.answer] + wrong[index:], index


def near_pairs(answer: str, wrong: list[str], rng: np.random.Generator) -> list[str]:
    """`wrong` led by a caption one attribute away from the answer, then the first wrong option and one a caption
    away from it: four options in two such pairs, so that telling the answer from its neighbour takes its colour
    and shape both, while the options' pattern says nothing of which pair holds it. Unchanged for answers that are
    not objects (numbers)."""
    near_answer = [c for c in near_captions(answer) if c not in wrong[:1]]
    if not near_answer or not wrong:
        return wrong
    taken = [answer, near_answer[int(rng.integers(len(near_answer)))], wrong[0]]
    near_other = [c for c in near_captions(wrong[0]) if c not in taken]
    if near_other:
        taken.append(near_other[int(rng.integers(len(near_other)))])
    return list(dict.fromkeys(taken[1:] + wrong[1:]))


def mc_prompt(question: str, options: Sequence[str]) -> str:
    """The original evaluation prompt (without the video token) for four options."""
    return MC_PROMPT.format(*options, question=question)


@dataclass(frozen=True)
class QAItem:
    """One question about one video, open (no options) or multiple choice."""

    question_id: str
    video_name: str
    kind: str
    question: str
    answer: str
    options: tuple[str, ...] = ()
    answer_index: int = -1
    judged: tuple[tuple[str, bool], ...] = ()  # written as the row's "judgements" (`llava.data.option_judgement`)
    mc_reply: str = "letter"  # a multiple-choice item's answer in training: its letter or its option's words

    def train_row(self) -> dict[str, Any]:
        """The LLaVA conversation row; a multiple-choice item is answered with its letter, or with the right
        option's words where `mc_reply` is "option"."""
        if self.options:
            reply = LETTERS[self.answer_index] if self.mc_reply == "letter" else self.options[self.answer_index]
            prompt = mc_prompt(self.question, self.options)
        else:
            prompt, reply = self.question, self.answer
        row: dict[str, Any] = {
            "id": self.question_id,
            "video": f"videos/{self.video_name}",
            "kind": self.kind,
            "conversations": [{"from": "human", "value": f"{VIDEO_TOKEN}\n{prompt}"}, {"from": "gpt", "value": reply}],
        }
        if self.options:
            row.update(options=list(self.options), answer_text=self.answer)
        if self.judged:
            row["judgements"] = [{"text": text, "right": right} for text, right in self.judged]
        return row

    def test_rows(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(test_q row, test_a row) in the original multiple-choice evaluation format."""
        options = {f"option {i}": option for i, option in enumerate(self.options)}
        q = {
            "video_name": self.video_name,
            "question_id": self.question_id,
            "question": self.question,
            "option": options,
            "type": self.kind,
        }
        return q, {"question_id": self.question_id, "answer": self.answer_index, "type": self.kind}


def video_items(
    spec: VideoSpec,
    seed: int,
    video_index: int,
    kinds: Sequence[str],
    mc_ratio: float,
    near_miss: bool = False,
    mc_reply: str = "letter",
) -> list[QAItem]:
    """The questions about one video: one per kind, each kind drawn from its own seeded stream so that a
    question does not change with the other kinds chosen or with mc_ratio (OPEN_ONLY kinds are never multiple
    choice); `near_miss`: options in near pairs (`near_pairs`); `mc_reply`: what a multiple-choice row is
    answered with in training (MC_REPLIES)."""
    items = []
    for kind in kinds:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(video_index, 1, ALL_KINDS.index(kind))))
        as_mc = rng.random() < mc_ratio and kind not in OPEN_ONLY
        question = make_question(spec, kind, rng, near_miss)
        if question is None:
            continue
        qid = f"{spec.name}_{kind}"
        if as_mc:
            options, index = to_multiple_choice(question, rng, near_miss=near_miss)
            items.append(
                QAItem(
                    qid, spec.filename, kind, question.text, question.answer, tuple(options), index, mc_reply=mc_reply
                )
            )
        else:
            items.append(QAItem(qid, spec.filename, kind, question.text, question.answer, judged=question.judged))
    return items


# --- writing a data set ----------------------------------------------------------------------------------
def video_name(index: int) -> str:
    return f"synth_{index:06d}"


def generate(
    out: str | os.PathLike,
    num_videos: int,
    seed: int,
    *,
    kinds: Sequence[str] = KINDS,
    fmt: str = "train",
    mc_ratio: float = 0.0,
    min_scenes: int = 2,
    max_scenes: int = 6,
    fps: float = 4.0,
    size: int = 64,
    min_scene_seconds: float = 2.0,
    max_scene_seconds: float = 4.0,
    distractors: int = 0,
    near_miss: bool = False,
    mc_reply: str = "letter",
    progress: bool = True,
) -> dict[str, Path]:
    """Write OUT/videos/*.mp4, OUT/truth.json and either OUT/train.json (fmt "train") or OUT/test_q.json and
    OUT/test_a.json (fmt "mc", every question multiple choice: no OPEN_ONLY kind). Returns the JSON files written
    by name."""
    if fmt == "mc" and set(kinds) & set(OPEN_ONLY):
        raise ValueError(f"{', '.join(OPEN_ONLY)} questions are never multiple choice: leave them out of format mc")
    if mc_reply not in MC_REPLIES:
        raise ValueError(f"unknown mc_reply {mc_reply!r}; valid: {', '.join(MC_REPLIES)}")
    from llava.progress import progress_bar
    from llava.video.write import write_mp4

    out = Path(out)
    settings: dict[str, Any] = dict(
        min_scenes=min_scenes,
        max_scenes=max_scenes,
        fps=float(fps),
        size=size,
        min_scene_seconds=min_scene_seconds,
        max_scene_seconds=max_scene_seconds,
        distractors=distractors,
    )
    truth_videos, items = [], []
    for index in progress_bar(range(num_videos), desc="synthetic videos", unit="video", quiet=not progress):
        spec = sample_video_spec(video_rng(seed, index), video_name(index), **settings)
        if "brief_object" in kinds:  # its own stream: the scenes are those of a run without it
            spec = add_flash(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 2))), spec)
        write_mp4(render_frames(spec), out / "videos" / spec.filename, spec.fps, threads=1)
        truth_videos.append(spec.to_truth())
        items += video_items(spec, seed, index, kinds, 1.0 if fmt == "mc" else mc_ratio, near_miss, mc_reply)
    written = {}
    if fmt == "mc":
        pairs = [item.test_rows() for item in items]
        written["test_q"] = write_json_atomic([q for q, _ in pairs], out / "test_q.json")
        written["test_a"] = write_json_atomic([a for _, a in pairs], out / "test_a.json")
    else:
        written["train"] = write_json_atomic([item.train_row() for item in items], out / "train.json")
    truth = {
        "seed": seed,
        "format": fmt,
        "kinds": list(kinds),
        "mc_ratio": mc_ratio if fmt == "train" else 1.0,
        "near_miss": near_miss,
        "mc_reply": mc_reply,
        "settings": settings,
        "templates": TEMPLATES,
        "world": {"colours": list(COLOURS), "shapes": list(SHAPES), "backgrounds": list(BACKGROUNDS)},
        "videos": truth_videos,
    }
    written["truth"] = write_json_atomic(truth, out / "truth.json")
    return written


def asked_again(
    folder: str | os.PathLike,
    videos: int | None = None,
    *,
    kinds: Sequence[str] = KINDS,
    mc_ratio: float = 0.0,
    mc_reply: str = "letter",
    near_miss: bool = False,
) -> list[dict]:
    """Training rows about the first `videos` videos of a data set written by `generate` (all by default), asked as
    `generate` would ask them with these settings and the set's seed: the rows its train.json would hold, written
    without rendering the videos again (the questions depend on the seed and the video's index, not on the other
    settings)."""
    truth = json.loads((Path(folder) / "truth.json").read_text())
    rows = []
    for index, video in enumerate(truth["videos"][:videos]):  # written in index order
        items = video_items(VideoSpec.from_truth(video), truth["seed"], index, kinds, mc_ratio, near_miss, mc_reply)
        rows += [item.train_row() for item in items]
    return rows


# --- command line ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llava.data.shapes_dataset",
        description="Generate synthetic scene videos (h264 mp4) with ground truth and questions.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--num-videos", type=int, required=True, help="how many videos (>= 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-scenes", type=int, default=2)
    parser.add_argument("--max-scenes", type=int, default=6)
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=64, help="frame width and height in pixels (even)")
    parser.add_argument("--min-scene-seconds", type=float, default=2.0)
    parser.add_argument("--max-scene-seconds", type=float, default=4.0)
    parser.add_argument("--distractors", type=int, default=0, help="extra smaller shapes per scene")
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help=f"comma list of: {', '.join(ALL_KINDS)} (default: {', '.join(KINDS)}; brief_object shows an "
        "object of no scene at the centre of every video for 1-1.5 s, like a NIAVH needle; when asks when an "
        f"object of one scene was shown, answered {WHEN_ANSWER!r} (the serving session fills in the time), and "
        f"when_absent asks it of an object not shown, answered {NOT_SHOWN_ANSWER!r}; the when kinds are never "
        "multiple choice, not with --format mc nor in the --mc-ratio share)",
    )
    parser.add_argument("--format", dest="fmt", choices=("train", "mc"), default="train")
    parser.add_argument(
        "--mc-ratio", type=float, default=0.0, help="share of train.json rows asked as multiple choice (format train)"
    )
    parser.add_argument(
        "--near-miss",
        action="store_true",
        help="multiple-choice options in two pairs one attribute apart (the answer, a caption of its colour or "
        "shape, another option and one of its neighbours), and when_absent objects one attribute from a shown one, "
        "for training a model to read colour and shape both",
    )
    parser.add_argument(
        "--mc-reply",
        choices=MC_REPLIES,
        default="letter",
        help="what a multiple-choice training row is answered with: its letter (default, as the original prompt "
        "asks) or the right option's own words",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments; a bad one ends in one line via parser.error (exit code 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ALL_KINDS]
    checks = [
        (args.num_videos < 1, f"--num-videos must be at least 1, got {args.num_videos}"),
        (args.min_scenes < 1, f"--min-scenes must be at least 1, got {args.min_scenes}"),
        (
            args.min_scenes > args.max_scenes,
            f"--min-scenes ({args.min_scenes}) is larger than --max-scenes ({args.max_scenes})",
        ),
        (args.max_scenes > 99, f"--max-scenes must be at most 99, got {args.max_scenes}"),
        (not args.fps > 0, f"--fps must be positive, got {args.fps}"),
        (args.size < 16 or args.size % 2, f"--size must be even and at least 16, got {args.size}"),
        (
            not 0 < args.min_scene_seconds <= args.max_scene_seconds,
            f"need 0 < --min-scene-seconds <= --max-scene-seconds, got {args.min_scene_seconds} "
            f"and {args.max_scene_seconds}",
        ),
        (args.distractors < 0, f"--distractors must be >= 0, got {args.distractors}"),
        (not kinds, "--kinds is empty"),
        (bool(unknown), f"unknown kind(s) {', '.join(unknown)}; valid kinds: {', '.join(ALL_KINDS)}"),
        (not 0.0 <= args.mc_ratio <= 1.0, f"--mc-ratio must be in [0, 1], got {args.mc_ratio}"),
        (
            args.fmt == "mc" and bool(set(kinds) & set(OPEN_ONLY)),
            f"{', '.join(OPEN_ONLY)} questions are never multiple choice: leave them out of --format mc",
        ),
    ]
    for failed, message in checks:
        if failed:
            parser.error(message)
    args.kinds = list(dict.fromkeys(kinds))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Generate a synthetic data set.

    python -m llava.data.shapes_dataset --out data/shapes --num-videos 200 --seed 0 --kinds caption,first_scene,count
    """
    args = parse_args(argv)
    try:
        written = generate(
            args.out,
            args.num_videos,
            args.seed,
            kinds=args.kinds,
            fmt=args.fmt,
            mc_ratio=args.mc_ratio,
            min_scenes=args.min_scenes,
            max_scenes=args.max_scenes,
            fps=args.fps,
            size=args.size,
            min_scene_seconds=args.min_scene_seconds,
            max_scene_seconds=args.max_scene_seconds,
            distractors=args.distractors,
            near_miss=args.near_miss,
            mc_reply=args.mc_reply,
            progress=not args.quiet,
        )
    except OSError as exc:
        raise SystemExit(f"error: cannot write the data set to {args.out}: {exc}") from None
    print(f"wrote {args.num_videos} videos and {', '.join(p.name for p in written.values())} to {args.out}")


if __name__ == "__main__":
    main()
