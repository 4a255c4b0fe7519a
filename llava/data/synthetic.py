"""The synthetic world: procedural videos of coloured shapes, scenes cut hard, with ground truth and questions.

Each video is a run of scenes; a scene is a background colour and one main shape of some colour moving
smoothly (a straight line that bounces off the borders, or a circle path). Consecutive scenes differ in
(colour, shape) and in background, so every cut is visible. Videos are written as h264 mp4 files together with
instruction JSON in the original LLaVA conversation format (or the original multiple-choice evaluation format)
and a truth.json holding every scene's frames, seconds and content.

Run (writes data/shapes/videos/*.mp4, train.json and truth.json):
    python -m llava.data.synthetic --out data/shapes --num-videos 200 --seed 0
Multiple-choice evaluation files (test_q.json, test_a.json):
    python -m llava.data.synthetic --out data/shapes_mc --num-videos 50 --seed 1 --format mc
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from llava.atomic import write_json_atomic

# --- the vocabulary (kept small: a tiny tokenizer is trained on it) ---------------------------------------
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (40, 200, 60),
    "blue": (50, 100, 240),
    "yellow": (240, 220, 40),
    "white": (245, 245, 245),
    "purple": (170, 60, 210),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "gray": (100, 100, 100),
    "navy": (15, 20, 75),
    "brown": (85, 50, 20),
}
MOTIONS: tuple[str, ...] = ("bounce", "circle")

# --- questions: every template in one place ------------------------------------------------------------
TEMPLATES: dict[str, str] = {
    "caption": "Describe the video in one sentence.",
    "first_scene": "What was in the first scene?",
    "last_scene": "What was in the last scene?",
    "nth_scene": "What was in scene {n}?",
    "count": "How many scenes are there?",
    "order": "Which came first, {a} or {b}?",
}
KINDS: tuple[str, ...] = tuple(TEMPLATES)
CAPTION_TEMPLATE = "a {colour} {shape}"
VIDEO_TOKEN = "<video>"
LETTERS = "ABCD"
MC_PROMPT = (
    "{question}\nA. {0}\nB. {1}\nC. {2}\nD. {3}\n"
    "Answer with the option's letter from the given choices directly."
)
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_word(n: int) -> str:
    """1 -> "one", 21 -> "twenty one" (1 to 99)."""
    if not 1 <= n <= 99:
        raise ValueError(f"number_word supports 1 to 99, got {n}")
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")


def caption_of(colour: str, shape: str) -> str:
    return CAPTION_TEMPLATE.format(colour=colour, shape=shape)


ALL_CAPTIONS: tuple[str, ...] = tuple(caption_of(c, s) for c in COLOURS for s in SHAPES)


# --- the world's objects --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Motion:
    """A smooth path in frame fractions (0..1). bounce: start (x, y), velocity (vx, vy) per frame, reflected at
    the borders; circle: centre (x, y), radius `orbit`, angular speed `omega` (radians per frame), `phase`."""

    kind: str
    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0
    orbit: float = 0.0
    omega: float = 0.0
    phase: float = 0.0

    def position(self, t_index: int, radius: float) -> tuple[float, float]:
        """Centre (x, y) in frame fractions at frame `t_index` of the scene, for a shape of `radius`."""
        if self.kind == "bounce":
            return _reflect(self.x + self.vx * t_index, radius), _reflect(self.y + self.vy * t_index, radius)
        if self.kind == "circle":
            angle = self.phase + self.omega * t_index
            return self.x + self.orbit * math.cos(angle), self.y + self.orbit * math.sin(angle)
        raise ValueError(f"unknown motion kind {self.kind!r}; valid kinds: {', '.join(MOTIONS)}")


def _reflect(p: float, radius: float) -> float:
    """Fold a free coordinate back into [radius, 1 - radius], as a ball bouncing between two walls."""
    low, span = radius, 1.0 - 2.0 * radius
    if span <= 0:
        return 0.5
    q = (p - low) % (2.0 * span)
    return low + (q if q <= span else 2.0 * span - q)


@dataclass(frozen=True)
class Sprite:
    """One shape: colour and shape names, radius as a fraction of the frame size, and its motion."""

    colour: str
    shape: str
    radius: float
    motion: Motion

    def center(self, t_index: int, size: int) -> tuple[float, float]:
        """Centre (x, y) in pixels at frame `t_index` of its scene in a `size` x `size` frame."""
        x, y = self.motion.position(t_index, self.radius)
        return x * size, y * size


@dataclass(frozen=True)
class Scene:
    """One scene: frames start_frame..end_frame (inclusive) of its video, its background and main shape.
    `distractors` are extra smaller shapes drawn under the main one (none by default)."""

    colour: str
    shape: str
    background: str
    start_frame: int
    end_frame: int
    radius: float
    motion: Motion
    distractors: tuple[Sprite, ...] = ()

    @property
    def caption(self) -> str:
        return caption_of(self.colour, self.shape)

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame + 1

    @property
    def sprite(self) -> Sprite:
        return Sprite(self.colour, self.shape, self.radius, self.motion)

    def to_truth(self, fps: float) -> dict[str, Any]:
        return {
            "start": round(self.start_frame / fps, 6),
            "end": round((self.end_frame + 1) / fps, 6),
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "caption": self.caption,
            "colour": self.colour,
            "shape": self.shape,
            "background": self.background,
            "radius": self.radius,
            "motion": asdict(self.motion),
            "distractors": [asdict(d) for d in self.distractors],
        }

    @classmethod
    def from_truth(cls, row: dict[str, Any]) -> Scene:
        distractors = tuple(
            Sprite(d["colour"], d["shape"], d["radius"], Motion(**d["motion"])) for d in row["distractors"]
        )
        return cls(row["colour"], row["shape"], row["background"], row["start_frame"], row["end_frame"],
                   row["radius"], Motion(**row["motion"]), distractors)


@dataclass(frozen=True)
class VideoSpec:
    """A whole video: its name (file NAME.mp4), frame rate, square frame size in pixels, and scenes in order."""

    name: str
    fps: float
    size: int
    scenes: tuple[Scene, ...]

    @property
    def num_frames(self) -> int:
        return self.scenes[-1].end_frame + 1 if self.scenes else 0

    @property
    def filename(self) -> str:
        return f"{self.name}.mp4"

    def scene_index_at(self, frame: int) -> int:
        """Index of the scene showing at frame `frame`."""
        for index, scene in enumerate(self.scenes):
            if scene.start_frame <= frame <= scene.end_frame:
                return index
        raise IndexError(f"frame {frame} is outside {self.name} ({self.num_frames} frames)")

    def to_truth(self) -> dict[str, Any]:
        return {
            "video": f"videos/{self.filename}",
            "name": self.name,
            "fps": self.fps,
            "size": self.size,
            "num_frames": self.num_frames,
            "duration": round(self.num_frames / self.fps, 6),
            "scenes": [scene.to_truth(self.fps) for scene in self.scenes],
        }

    @classmethod
    def from_truth(cls, row: dict[str, Any]) -> VideoSpec:
        return cls(row["name"], row["fps"], row["size"], tuple(Scene.from_truth(s) for s in row["scenes"]))


# --- drawing ---------------------------------------------------------------------------------------------
def shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """Boolean (size, size) mask of `shape` centred at pixel (cx, cy) with radius r (pixel centres tested)."""
    ys = (np.arange(size, dtype=np.float32) + 0.5)[:, None] - cy
    xs = (np.arange(size, dtype=np.float32) + 0.5)[None, :] - cx
    if shape == "circle":
        return xs * xs + ys * ys <= r * r
    if shape == "square":
        half = 0.8 * r
        return (np.abs(xs) <= half) & (np.abs(ys) <= half)
    if shape == "triangle":  # equilateral, pointing up, circumradius 1.1 r
        R = 1.1 * r
        below_top_edges = (math.sqrt(3.0) * np.abs(xs) - ys) <= R  # the two slanted edges through the apex
        return below_top_edges & (ys <= 0.5 * R)
    raise ValueError(f"unknown shape {shape!r}; valid shapes: {', '.join(SHAPES)}")


def paint_sprite(frame: np.ndarray, sprite: Sprite, t_index: int) -> np.ndarray:
    """Draw `sprite` as it is at frame `t_index` of its scene onto a square RGB `frame`, in place."""
    size = frame.shape[0]
    cx, cy = sprite.center(t_index, size)
    frame[shape_mask(sprite.shape, cx, cy, sprite.radius * size, size)] = COLOURS[sprite.colour]
    return frame


def render_scene_frame(scene: Scene, t_index: int, size: int) -> np.ndarray:
    """Frame `t_index` (counted from the scene's start) of `scene`: uint8 (size, size, 3) RGB."""
    frame = np.empty((size, size, 3), dtype=np.uint8)
    frame[:] = BACKGROUNDS[scene.background]
    for sprite in scene.distractors:
        paint_sprite(frame, sprite, t_index)
    return paint_sprite(frame, scene.sprite, t_index)


def render_frames(spec: VideoSpec) -> Iterator[np.ndarray]:
    """Every frame of the video in order, one at a time (long videos never sit in memory)."""
    for scene in spec.scenes:
        for t_index in range(scene.num_frames):
            yield render_scene_frame(scene, t_index, spec.size)


# --- sampling --------------------------------------------------------------------------------------------
def sample_motion(rng: np.random.Generator, radius: float, fps: float) -> Motion:
    """A bounce (speed 0.15-0.4 frame widths per second) or a circle path (0.8-2 radians per second)."""
    if rng.random() < 0.5:
        x, y = rng.uniform(radius, 1.0 - radius, size=2)
        speed, angle = rng.uniform(0.15, 0.4) / fps, rng.uniform(0.0, 2.0 * math.pi)
        return Motion("bounce", float(x), float(y), vx=float(speed * math.cos(angle)),
                      vy=float(speed * math.sin(angle)))
    orbit = float(rng.uniform(0.3, 0.9) * max(0.0, 0.5 - radius))
    x, y = rng.uniform(radius + orbit, 1.0 - radius - orbit, size=2)
    omega = float(rng.choice((-1.0, 1.0)) * rng.uniform(0.8, 2.0) / fps)
    return Motion("circle", float(x), float(y), orbit=orbit, omega=omega,
                  phase=float(rng.uniform(0.0, 2.0 * math.pi)))


def sample_sprite(rng: np.random.Generator, colour: str, shape: str, fps: float,
                  radius_range: tuple[float, float] = (12 / 64, 18 / 64)) -> Sprite:
    radius = float(rng.uniform(*radius_range))
    return Sprite(colour, shape, radius, sample_motion(rng, radius, fps))


def sample_scene(rng: np.random.Generator, start_frame: int, num_frames: int, fps: float,
                 previous: Scene | None = None, distractors: int = 0) -> Scene:
    """A scene whose (colour, shape) pair and background both differ from `previous`."""
    pairs = [(c, s) for c in COLOURS for s in SHAPES
             if previous is None or (c, s) != (previous.colour, previous.shape)]
    colour, shape = pairs[int(rng.integers(len(pairs)))]
    backgrounds = [b for b in BACKGROUNDS if previous is None or b != previous.background]
    background = backgrounds[int(rng.integers(len(backgrounds)))]
    main = sample_sprite(rng, colour, shape, fps)
    others = []
    for _ in range(distractors):
        other_colours = [c for c in COLOURS if c != colour]
        radius_range = (0.35 * main.radius, 0.55 * main.radius)
        others.append(sample_sprite(rng, other_colours[int(rng.integers(len(other_colours)))],
                                    SHAPES[int(rng.integers(len(SHAPES)))], fps, radius_range))
    return Scene(colour, shape, background, start_frame, start_frame + num_frames - 1,
                 main.radius, main.motion, tuple(others))


def scene_frame_range(fps: float, min_seconds: float, max_seconds: float) -> tuple[int, int]:
    """Whole-frame bounds of a scene's length for durations min_seconds..max_seconds (at least one frame)."""
    low = max(1, round(min_seconds * fps))
    return low, max(low, round(max_seconds * fps))


def sample_video_spec(rng: np.random.Generator, name: str, min_scenes: int = 2, max_scenes: int = 6,
                      fps: float = 4.0, size: int = 64, *, min_scene_seconds: float = 2.0,
                      max_scene_seconds: float = 4.0, distractors: int = 0) -> VideoSpec:
    """A video of min_scenes..max_scenes scenes (uniform), each lasting a uniform whole number of frames."""
    if not 1 <= min_scenes <= max_scenes:
        raise ValueError(f"need 1 <= min_scenes <= max_scenes, got {min_scenes} and {max_scenes}")
    low, high = scene_frame_range(fps, min_scene_seconds, max_scene_seconds)
    scenes: list[Scene] = []
    start = 0
    for _ in range(int(rng.integers(min_scenes, max_scenes + 1))):
        length = int(rng.integers(low, high + 1))
        scenes.append(sample_scene(rng, start, length, fps, scenes[-1] if scenes else None, distractors))
        start += length
    return VideoSpec(name, float(fps), int(size), tuple(scenes))


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


def _about_scene(spec: VideoSpec, kind: str, index: int, text: str) -> Question:
    answer = spec.scenes[index].caption
    others = tuple(dict.fromkeys(s.caption for s in spec.scenes if s.caption != answer))
    return Question(kind, text, answer, others, tuple(c for c in ALL_CAPTIONS if c != answer))


def make_question(spec: VideoSpec, kind: str, rng: np.random.Generator) -> Question | None:
    """One question of `kind` about `spec` (None where the kind does not apply, e.g. order with one caption)."""
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
    raise ValueError(f"unknown question kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def to_multiple_choice(question: Question, rng: np.random.Generator,
                       num_options: int = 4) -> tuple[list[str], int]:
    """Options (hard negatives first, then the pool, each shuffled) and the correct one's uniform index."""
    hard = [question.hard_negatives[i] for i in rng.permutation(len(question.hard_negatives))]
    pool = [question.pool[i] for i in rng.permutation(len(question.pool))]
    wrong = [w for w in dict.fromkeys(hard + pool) if w != question.answer][: num_options - 1]
    if len(wrong) < num_options - 1:
        raise ValueError(f"not enough distractors for {question.kind!r}: {wrong}")
    index = int(rng.integers(num_options))
    return wrong[:index] + [question.answer] + wrong[index:], index


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

    def train_row(self) -> dict[str, Any]:
        """The LLaVA conversation row; a multiple-choice item is answered with its letter."""
        if self.options:
            prompt, reply = mc_prompt(self.question, self.options), LETTERS[self.answer_index]
        else:
            prompt, reply = self.question, self.answer
        row: dict[str, Any] = {
            "id": self.question_id,
            "video": f"videos/{self.video_name}",
            "kind": self.kind,
            "conversations": [{"from": "human", "value": f"{VIDEO_TOKEN}\n{prompt}"},
                              {"from": "gpt", "value": reply}],
        }
        if self.options:
            row.update(options=list(self.options), answer_text=self.answer)
        return row

    def test_rows(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(test_q row, test_a row) in the original multiple-choice evaluation format."""
        options = {f"option {i}": option for i, option in enumerate(self.options)}
        q = {"video_name": self.video_name, "question_id": self.question_id, "question": self.question,
             "option": options, "type": self.kind}
        return q, {"question_id": self.question_id, "answer": self.answer_index, "type": self.kind}


def video_items(spec: VideoSpec, seed: int, video_index: int, kinds: Sequence[str],
                mc_ratio: float) -> list[QAItem]:
    """The questions about one video: one per kind, each kind drawn from its own seeded stream so that a
    question does not change with the other kinds chosen or with mc_ratio."""
    items = []
    for kind in kinds:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(video_index, 1, KINDS.index(kind))))
        as_mc = rng.random() < mc_ratio
        question = make_question(spec, kind, rng)
        if question is None:
            continue
        qid = f"{spec.name}_{kind}"
        if as_mc:
            options, index = to_multiple_choice(question, rng)
            items.append(QAItem(qid, spec.filename, kind, question.text, question.answer, tuple(options), index))
        else:
            items.append(QAItem(qid, spec.filename, kind, question.text, question.answer))
    return items


# --- writing a data set ----------------------------------------------------------------------------------
def video_name(index: int) -> str:
    return f"synth_{index:06d}"


def video_rng(seed: int, index: int) -> np.random.Generator:
    """Video `index`'s own stream: the same video whatever the number of videos generated."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 0)))


def generate(out: str | os.PathLike, num_videos: int, seed: int, *, kinds: Sequence[str] = KINDS,
             fmt: str = "train", mc_ratio: float = 0.0, min_scenes: int = 2, max_scenes: int = 6,
             fps: float = 4.0, size: int = 64, min_scene_seconds: float = 2.0, max_scene_seconds: float = 4.0,
             distractors: int = 0, progress: bool = True) -> dict[str, Path]:
    """Write OUT/videos/*.mp4, OUT/truth.json and either OUT/train.json (fmt "train") or OUT/test_q.json and
    OUT/test_a.json (fmt "mc", every question multiple choice). Returns the JSON files written by name."""
    from tqdm import tqdm

    from llava.video.write import write_mp4

    out = Path(out)
    settings = dict(min_scenes=min_scenes, max_scenes=max_scenes, fps=float(fps), size=size,
                    min_scene_seconds=min_scene_seconds, max_scene_seconds=max_scene_seconds,
                    distractors=distractors)
    truth_videos, items = [], []
    for index in tqdm(range(num_videos), desc="synthetic videos", unit="video", disable=not progress):
        spec = sample_video_spec(video_rng(seed, index), video_name(index), **settings)
        write_mp4(render_frames(spec), out / "videos" / spec.filename, spec.fps, threads=1)
        truth_videos.append(spec.to_truth())
        items += video_items(spec, seed, index, kinds, 1.0 if fmt == "mc" else mc_ratio)
    written = {}
    if fmt == "mc":
        pairs = [item.test_rows() for item in items]
        written["test_q"] = write_json_atomic([q for q, _ in pairs], out / "test_q.json")
        written["test_a"] = write_json_atomic([a for _, a in pairs], out / "test_a.json")
    else:
        written["train"] = write_json_atomic([item.train_row() for item in items], out / "train.json")
    truth = {"seed": seed, "format": fmt, "kinds": list(kinds), "mc_ratio": mc_ratio if fmt == "train" else 1.0,
             "settings": settings, "templates": TEMPLATES,
             "world": {"colours": list(COLOURS), "shapes": list(SHAPES), "backgrounds": list(BACKGROUNDS)},
             "videos": truth_videos}
    written["truth"] = write_json_atomic(truth, out / "truth.json")
    return written


# --- command line ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llava.data.synthetic",
        description="Generate synthetic scene videos (h264 mp4) with ground truth and questions.")
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
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma list of: {', '.join(KINDS)}")
    parser.add_argument("--format", dest="fmt", choices=("train", "mc"), default="train")
    parser.add_argument("--mc-ratio", type=float, default=0.0,
                        help="share of train.json rows asked as multiple choice (format train)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments; a bad one ends in one line via parser.error (exit code 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    checks = [
        (args.num_videos < 1, f"--num-videos must be at least 1, got {args.num_videos}"),
        (args.min_scenes < 1, f"--min-scenes must be at least 1, got {args.min_scenes}"),
        (args.min_scenes > args.max_scenes,
         f"--min-scenes ({args.min_scenes}) is larger than --max-scenes ({args.max_scenes})"),
        (args.max_scenes > 99, f"--max-scenes must be at most 99, got {args.max_scenes}"),
        (not args.fps > 0, f"--fps must be positive, got {args.fps}"),
        (args.size < 16 or args.size % 2, f"--size must be even and at least 16, got {args.size}"),
        (not 0 < args.min_scene_seconds <= args.max_scene_seconds,
         f"need 0 < --min-scene-seconds <= --max-scene-seconds, got {args.min_scene_seconds} "
         f"and {args.max_scene_seconds}"),
        (args.distractors < 0, f"--distractors must be >= 0, got {args.distractors}"),
        (not kinds, "--kinds is empty"),
        (bool(unknown), f"unknown kind(s) {', '.join(unknown)}; valid kinds: {', '.join(KINDS)}"),
        (not 0.0 <= args.mc_ratio <= 1.0, f"--mc-ratio must be in [0, 1], got {args.mc_ratio}"),
    ]
    for failed, message in checks:
        if failed:
            parser.error(message)
    args.kinds = list(dict.fromkeys(kinds))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Generate a synthetic data set.

    python -m llava.data.synthetic --out data/shapes --num-videos 200 --seed 0 --kinds caption,first_scene,count
    """
    args = parse_args(argv)
    try:
        written = generate(args.out, args.num_videos, args.seed, kinds=args.kinds, fmt=args.fmt,
                           mc_ratio=args.mc_ratio, min_scenes=args.min_scenes, max_scenes=args.max_scenes,
                           fps=args.fps, size=args.size, min_scene_seconds=args.min_scene_seconds,
                           max_scene_seconds=args.max_scene_seconds, distractors=args.distractors,
                           progress=not args.quiet)
    except OSError as exc:
        raise SystemExit(f"error: cannot write the data set to {args.out}: {exc}") from None
    print(f"wrote {args.num_videos} videos and {', '.join(p.name for p in written.values())} to {args.out}")


if __name__ == "__main__":
    main()
