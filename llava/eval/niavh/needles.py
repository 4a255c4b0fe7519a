"""Needles: what is hidden in the haystack for a moment, in three modalities, each with its question.

- text: a caption drawn in white (black outline) at the bottom of the frame, sized to about 90% of its width;
- image: a picture at the centre; by default an object of the synthetic world (a purple triangle) drawn still,
  or a user's image file (its alpha channel is kept);
- video: a moving clip at the centre; by default the same object moving on a small circle, or a user's video.

Every needle has an `identity` (its modality and content: a text, an object, a file's digest) that the test
videos are cached under, and a `probe()`: the open question, the reference answer and four options.

    needle = ObjectNeedle("purple", "triangle", moving=True)
    frames = insert_needle(haystack_frames, needle, start_frame=40, num_frames=1, fps=1.0)
"""

from __future__ import annotations

import functools
import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from llava.data.shapes_dataset import TEMPLATES
from llava.data.shapes_world import COLOURS, SHAPES, caption_of, centre_sprite, paint_sprite
from llava.errors import ConfigError, VideoError
from llava.video.decode import load_video_fps

MODALITIES: tuple[str, ...] = ("text", "image", "video")
DEFAULT_OBJECT: tuple[str, str] = ("purple", "triangle")  # reserved for needles: never in the synthetic haystack
OBJECT_QUESTION = TEMPLATES["brief_object"]
TEXT_QUESTION = "What words were written in the video?"
NUM_OPTIONS = 4
CLIP_MAX_FRAMES = 150  # frames kept of a user's needle video (sampled at 30 fps)
CLIP_MAX_SIDE = 540  # the release's needle size


@dataclass(frozen=True)
class Probe:
    """What the model is asked about a needle: the open question, the reference answer, and the
    multiple-choice question with its options (the answer among them at answer_index)."""

    question: str
    answer: str
    options: tuple[str, ...]
    answer_index: int


class Needle(ABC):
    """A needle: `paint` draws it onto one frame of its appearance, in place."""

    modality: str
    identity: str
    question: str
    answer: str
    distractors: tuple[str, ...]

    def probe(self) -> Probe:
        """Four options: the answer and three distractors; where the answer sits follows the identity (the
        circular evaluation asks every rotation anyway)."""
        wrong = [d for d in dict.fromkeys(self.distractors) if d != self.answer][: NUM_OPTIONS - 1]
        if len(wrong) < NUM_OPTIONS - 1:
            raise ConfigError(f"needle {self.identity!r} needs {NUM_OPTIONS - 1} distractors, has {wrong}")
        index = int(hashlib.sha1(self.identity.encode()).hexdigest(), 16) % NUM_OPTIONS
        options = tuple(wrong[:index] + [self.answer] + wrong[index:])
        return Probe(self.question, self.answer, options, index)

    @abstractmethod
    def paint(self, frame: np.ndarray, index: int, fps: float) -> None:
        """Draw the needle as it is `index` frames (at `fps`) into its appearance onto `frame` (H, W, 3)."""


def insert_needle(frames: np.ndarray, needle: Needle, start_frame: int, num_frames: int, fps: float) -> np.ndarray:
    """A copy of `frames` (T, H, W, 3) with the needle drawn on frames start_frame .. start_frame+num_frames-1."""
    if start_frame < 0 or num_frames < 1 or start_frame + num_frames > len(frames):
        raise ValueError(f"needle frames {start_frame}..{start_frame + num_frames - 1} outside {len(frames)} frames")
    out = frames.copy()
    for i in range(num_frames):
        needle.paint(out[start_frame + i], i, fps)
    return out


def object_distractors(colour: str, shape: str) -> tuple[str, ...]:
    """Captions of the same vocabulary, hardest first: same colour other shape, same shape other colour,
    then a pair differing in both."""
    colours, shapes = list(COLOURS), list(SHAPES)
    c, s = colours.index(colour), shapes.index(shape)
    return (
        caption_of(colour, shapes[(s + 1) % len(shapes)]),
        caption_of(colours[(c + 1) % len(colours)], shape),
        caption_of(colours[(c + 2) % len(colours)], shapes[(s + 2) % len(shapes)]),
    )


def parse_object(text: str) -> tuple[str, str]:
    """'purple-triangle' (or 'purple triangle') -> ('purple', 'triangle'), checked against the world."""
    parts = text.replace("-", " ").split()
    if len(parts) != 2 or parts[0] not in COLOURS or parts[1] not in SHAPES:
        raise ConfigError(
            f"needle object {text!r} must be COLOUR-SHAPE with a colour of {', '.join(COLOURS)} "
            f"and a shape of {', '.join(SHAPES)}"
        )
    return parts[0], parts[1]


# --- text ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


class TextNeedle(Needle):
    modality = "text"

    def __init__(self, text: str, distractors: tuple[str, ...], question: str = TEXT_QUESTION) -> None:
        if not text.strip():
            raise ConfigError("the needle text is empty")
        self.text, self.answer, self.distractors, self.question = text, text, tuple(distractors), question
        self.identity = f"text:{text}"

    def font_size(self, width: int, height: int) -> int:
        """About 90% of the frame width, between 6 px and a quarter of the height."""
        natural = _font(100).getlength(self.text) or 1.0
        return int(min(max(6, 100 * 0.9 * width / natural), max(6, height // 4)))

    def paint(self, frame: np.ndarray, index: int, fps: float) -> None:
        h, w = frame.shape[:2]
        size = self.font_size(w, h)
        image = Image.fromarray(frame)
        ImageDraw.Draw(image).text(
            (w / 2, h * 0.96),
            self.text,
            fill=(255, 255, 255),
            font=_font(size),
            anchor="md",
            stroke_width=max(1, size // 12),
            stroke_fill=(0, 0, 0),
        )
        frame[:] = np.asarray(image)


# --- the synthetic object --------------------------------------------------------------------------------
class ObjectNeedle(Needle):
    """An object of the synthetic world at the frame's centre: still (image) or on a small circle (video)."""

    def __init__(
        self,
        colour: str,
        shape: str,
        moving: bool,
        question: str = OBJECT_QUESTION,
        distractors: tuple[str, ...] | None = None,
    ) -> None:
        self.colour, self.shape, self.moving = colour, shape, moving
        self.modality = "video" if moving else "image"
        self.identity = f"{self.modality}:synthetic:{colour}-{shape}"
        self.answer, self.question = caption_of(colour, shape), question
        self.distractors = tuple(distractors) if distractors else object_distractors(colour, shape)

    def paint(self, frame: np.ndarray, index: int, fps: float) -> None:
        paint_sprite(frame, centre_sprite(self.colour, self.shape, self.moving, fps), index)


# --- user files ------------------------------------------------------------------------------------------
def _file_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:12]


def _fit(picture: np.ndarray, frame_shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Resize (h, w, C) so its longer side is `scale` times the frame's shorter side."""
    target = scale * min(frame_shape[:2]) / max(picture.shape[:2])
    w, h = max(1, round(picture.shape[1] * target)), max(1, round(picture.shape[0] * target))
    return np.asarray(Image.fromarray(picture).resize((w, h), Image.Resampling.BILINEAR))


def _paste_centre(frame: np.ndarray, picture: np.ndarray) -> None:
    """Composite (h, w, 3) or (h, w, 4) at the centre of `frame`; alpha blends, RGB covers."""
    h, w = picture.shape[:2]
    top, left = (frame.shape[0] - h) // 2, (frame.shape[1] - w) // 2
    region = frame[top : top + h, left : left + w]
    if picture.shape[2] == 4:
        alpha = picture[:, :, 3:4].astype(np.float32) / 255.0
        region[:] = (alpha * picture[:, :, :3] + (1.0 - alpha) * region + 0.5).astype(np.uint8)
    else:
        region[:] = picture


class PictureNeedle(Needle):
    """A user's image file at the centre, its longer side `scale` of the frame's shorter side."""

    modality = "image"

    def __init__(
        self,
        path: str | Path,
        description: str,
        distractors: tuple[str, ...],
        question: str = OBJECT_QUESTION,
        scale: float = 0.5,
    ) -> None:
        path = Path(path)
        try:
            with Image.open(path) as image:
                self.picture = np.asarray(image.convert("RGBA"))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise VideoError(f"needle image {path}: cannot read it ({err})") from err
        if self.picture[:, :, 3].min() == 255:
            self.picture = np.ascontiguousarray(self.picture[:, :, :3])
        self.identity = f"image:file:{path.name}:{_file_digest(path)}:scale={scale:g}"
        self.answer, self.distractors, self.question, self.scale = description, tuple(distractors), question, scale
        self._sized: dict[tuple[int, ...], np.ndarray] = {}

    def paint(self, frame: np.ndarray, index: int, fps: float) -> None:
        if frame.shape not in self._sized:
            self._sized[frame.shape] = _fit(self.picture, frame.shape, self.scale)
        _paste_centre(frame, self._sized[frame.shape])


class ClipNeedle(Needle):
    """A user's video file at the centre, played from its start (looped if the needle lasts longer)."""

    modality = "video"

    def __init__(
        self,
        path: str | Path,
        description: str,
        distractors: tuple[str, ...],
        question: str = OBJECT_QUESTION,
        scale: float = 0.5,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise VideoError(f"needle video {path}: no such file")
        frames, self.stamps = load_video_fps(path, fps=30.0, max_frames=CLIP_MAX_FRAMES)
        if max(frames.shape[1:3]) > CLIP_MAX_SIDE:
            frames = np.stack([_fit(f, (CLIP_MAX_SIDE, CLIP_MAX_SIDE), 1.0) for f in frames])
        self.clip = cast(np.ndarray, frames)  # decoded without a transform: (T, H, W, 3) uint8
        self.identity = f"video:file:{path.name}:{_file_digest(path)}:scale={scale:g}"
        self.answer, self.distractors, self.question, self.scale = description, tuple(distractors), question, scale
        self._sized: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}

    def paint(self, frame: np.ndarray, index: int, fps: float) -> None:
        period = self.stamps[-1] + (self.stamps[1] - self.stamps[0] if len(self.stamps) > 1 else 1.0)
        i = int(np.searchsorted(self.stamps, (index / fps) % period, side="right")) - 1
        key = (max(i, 0), frame.shape)
        if key not in self._sized:
            self._sized[key] = _fit(self.clip[key[0]], frame.shape, self.scale)
        _paste_centre(frame, self._sized[key])


# --- building the needles of a run -----------------------------------------------------------------------
@dataclass(frozen=True)
class NeedleOptions:
    """What the command line says about the needles (None: the synthetic default of that modality)."""

    obj: tuple[str, str] = DEFAULT_OBJECT
    text: str | None = None
    image: str | None = None
    video: str | None = None
    description: str | None = None  # the reference answer for a user image or video
    distractors: tuple[str, ...] | None = None  # wrong answers for a user needle's multiple choice
    question: str | None = None
    scale: float = 0.5


def build_needles(modalities: list[str], options: NeedleOptions, need_distractors: bool) -> dict[str, Needle]:
    """One needle per modality. A user needle (text, image or video file) takes --distractors for multiple
    choice (`need_distractors`); an image or video file also needs its description (the reference answer)."""
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ConfigError(f"unknown modality {', '.join(unknown) or '(none)'}; valid: {', '.join(MODALITIES)}")
    colour, shape = options.obj
    fallback = options.distractors or object_distractors(colour, shape)
    user = {"text": options.text, "image": options.image, "video": options.video}
    for modality in modalities:
        if user[modality] is None:
            continue
        if modality != "text" and not options.description:
            raise ConfigError(f"--needle-{modality} needs --needle-description (the reference answer)")
        if need_distractors and not options.distractors:
            raise ConfigError(
                f"multiple choice with your own {modality} needle needs --distractors 'wrong one;wrong two;wrong three'"
            )
    needles: dict[str, Needle] = {}
    for modality in modalities:
        q = {"question": options.question} if options.question else {}
        if modality == "text":
            needles[modality] = TextNeedle(options.text or caption_of(colour, shape), fallback, **q)
        elif (source := user[modality]) is None:
            needles[modality] = ObjectNeedle(colour, shape, moving=modality == "video", distractors=fallback, **q)
        else:
            kind = PictureNeedle if modality == "image" else ClipNeedle
            description = str(options.description)  # checked above: given with the user's own needle
            needles[modality] = kind(source, description, fallback, scale=options.scale, **q)
    return needles
