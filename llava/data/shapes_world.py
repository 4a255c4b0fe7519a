"""The synthetic world: coloured shapes moving over a background, scenes cut hard, rendered frame by frame.

A video is a run of scenes; a scene is a background colour and one main shape of some colour moving smoothly
(a straight line that bounces off the borders, or a circle path), optionally with smaller distractor shapes.
Consecutive scenes differ in (colour, shape) and in background, so every cut is visible. `VideoSpec` holds a
whole video (and round-trips through truth.json); `render_frames` draws it; `sample_video_spec` draws one at
random. Data sets of these videos with questions are written by `llava.data.shapes_dataset`.

    spec = sample_video_spec(video_rng(seed=0, index=0), "demo", min_scenes=3, max_scenes=3)
    frames = list(render_frames(spec))    # (size, size, 3) uint8 each
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

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
NEEDLE_RADIUS = 0.22  # an object shown for a moment at the centre (a "needle"), of the frame side
NEEDLE_ORBIT = 0.06  # the moving one's circle, of the frame side
CAPTION_TEMPLATE = "a {colour} {shape}"


def caption_of(colour: str, shape: str) -> str:
    return CAPTION_TEMPLATE.format(colour=colour, shape=shape)


_ATTRIBUTES: dict[str, tuple[str, str]] = {caption_of(c, s): (c, s) for c in COLOURS for s in SHAPES}
ALL_CAPTIONS: tuple[str, ...] = tuple(_ATTRIBUTES)


def near_captions(caption: str) -> tuple[str, ...]:
    """The captions one attribute away from `caption`: its colour with the other shapes, then its shape in the other
    colours (none for a text that is not an object's caption, e.g. a number word)."""
    if caption not in _ATTRIBUTES:
        return ()
    colour, shape = _ATTRIBUTES[caption]
    same_colour = (caption_of(colour, other) for other in SHAPES if other != shape)
    return (*same_colour, *(caption_of(other, shape) for other in COLOURS if other != colour))


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
        return cls(
            row["colour"],
            row["shape"],
            row["background"],
            row["start_frame"],
            row["end_frame"],
            row["radius"],
            Motion(**row["motion"]),
            distractors,
        )


def centre_sprite(colour: str, shape: str, moving: bool, fps: float) -> Sprite:
    """A large object at the frame's centre: still, or on a small circle at half a turn per second."""
    if moving:
        return Sprite(colour, shape, NEEDLE_RADIUS, Motion("circle", 0.5, 0.5, orbit=NEEDLE_ORBIT, omega=math.pi / fps))
    return Sprite(colour, shape, NEEDLE_RADIUS, Motion("bounce", 0.5, 0.5))


@dataclass(frozen=True)
class Flash:
    """An object shown for a moment over the scenes, at the centre, on frames start_frame..end_frame."""

    colour: str
    shape: str
    start_frame: int
    end_frame: int
    moving: bool

    @property
    def caption(self) -> str:
        return caption_of(self.colour, self.shape)

    def to_truth(self, fps: float) -> dict[str, Any]:
        return {
            "start": round(self.start_frame / fps, 6),
            "end": round((self.end_frame + 1) / fps, 6),
            "caption": self.caption,
            **asdict(self),
        }

    @classmethod
    def from_truth(cls, row: dict[str, Any]) -> Flash:
        return cls(row["colour"], row["shape"], row["start_frame"], row["end_frame"], row["moving"])


@dataclass(frozen=True)
class VideoSpec:
    """A whole video: its name (file NAME.mp4), frame rate, square frame size in pixels, and scenes in order."""

    name: str
    fps: float
    size: int
    scenes: tuple[Scene, ...]
    flash: Flash | None = None

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
        } | ({"flash": self.flash.to_truth(self.fps)} if self.flash else {})

    @classmethod
    def from_truth(cls, row: dict[str, Any]) -> VideoSpec:
        flash = Flash.from_truth(row["flash"]) if row.get("flash") else None
        return cls(row["name"], row["fps"], row["size"], tuple(Scene.from_truth(s) for s in row["scenes"]), flash)


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
    flash = spec.flash
    sprite = centre_sprite(flash.colour, flash.shape, flash.moving, spec.fps) if flash else None
    for scene in spec.scenes:
        for t_index in range(scene.num_frames):
            frame = render_scene_frame(scene, t_index, spec.size)
            index = scene.start_frame + t_index
            if flash and sprite is not None and flash.start_frame <= index <= flash.end_frame:
                paint_sprite(frame, sprite, index - flash.start_frame)
            yield frame


# --- sampling --------------------------------------------------------------------------------------------
def sample_motion(rng: np.random.Generator, radius: float, fps: float) -> Motion:
    """A bounce (speed 0.15-0.4 frame widths per second) or a circle path (0.8-2 radians per second)."""
    if rng.random() < 0.5:
        x, y = rng.uniform(radius, 1.0 - radius, size=2)
        speed, angle = rng.uniform(0.15, 0.4) / fps, rng.uniform(0.0, 2.0 * math.pi)
        return Motion(
            "bounce", float(x), float(y), vx=float(speed * math.cos(angle)), vy=float(speed * math.sin(angle))
        )
    orbit = float(rng.uniform(0.3, 0.9) * max(0.0, 0.5 - radius))
    x, y = rng.uniform(radius + orbit, 1.0 - radius - orbit, size=2)
    omega = float(rng.choice((-1.0, 1.0)) * rng.uniform(0.8, 2.0) / fps)
    return Motion("circle", float(x), float(y), orbit=orbit, omega=omega, phase=float(rng.uniform(0.0, 2.0 * math.pi)))


def sample_sprite(
    rng: np.random.Generator,
    colour: str,
    shape: str,
    fps: float,
    radius_range: tuple[float, float] = (12 / 64, 18 / 64),
) -> Sprite:
    radius = float(rng.uniform(*radius_range))
    return Sprite(colour, shape, radius, sample_motion(rng, radius, fps))


def sample_scene(
    rng: np.random.Generator,
    start_frame: int,
    num_frames: int,
    fps: float,
    previous: Scene | None = None,
    distractors: int = 0,
) -> Scene:
    """A scene whose (colour, shape) pair and background both differ from `previous`."""
    pairs = [(c, s) for c in COLOURS for s in SHAPES if previous is None or (c, s) != (previous.colour, previous.shape)]
    colour, shape = pairs[int(rng.integers(len(pairs)))]
    backgrounds = [b for b in BACKGROUNDS if previous is None or b != previous.background]
    background = backgrounds[int(rng.integers(len(backgrounds)))]
    main = sample_sprite(rng, colour, shape, fps)
    others = []
    for _ in range(distractors):
        other_colours = [c for c in COLOURS if c != colour]
        radius_range = (0.35 * main.radius, 0.55 * main.radius)
        others.append(
            sample_sprite(
                rng,
                other_colours[int(rng.integers(len(other_colours)))],
                SHAPES[int(rng.integers(len(SHAPES)))],
                fps,
                radius_range,
            )
        )
    return Scene(
        colour, shape, background, start_frame, start_frame + num_frames - 1, main.radius, main.motion, tuple(others)
    )


def scene_frame_range(fps: float, min_seconds: float, max_seconds: float) -> tuple[int, int]:
    """Whole-frame bounds of a scene's length for durations min_seconds..max_seconds (at least one frame)."""
    low = max(1, round(min_seconds * fps))
    return low, max(low, round(max_seconds * fps))


def sample_video_spec(
    rng: np.random.Generator,
    name: str,
    min_scenes: int = 2,
    max_scenes: int = 6,
    fps: float = 4.0,
    size: int = 64,
    *,
    min_scene_seconds: float = 2.0,
    max_scene_seconds: float = 4.0,
    distractors: int = 0,
) -> VideoSpec:
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


def without_object(spec: VideoSpec, reserved: tuple[str, str], whole_colour: bool = False) -> VideoSpec:
    """The video with the scenes showing the reserved (colour, shape) recoloured, or with `whole_colour` every
    scene of its colour; a new colour is never the reserved one and its pair differs from both neighbours' so
    no cut disappears."""
    scenes = list(spec.scenes)
    for i, scene in enumerate(scenes):
        if scene.colour != reserved[0] or not (whole_colour or scene.shape == reserved[1]):
            continue
        neighbours = [scenes[j] for j in (i - 1, i + 1) if 0 <= j < len(scenes)]
        taken = {(s.colour, s.shape) for s in neighbours}
        colour = next(c for c in COLOURS if c != reserved[0] and (c, scene.shape) not in taken)
        scenes[i] = dataclasses.replace(scene, colour=colour)
    return dataclasses.replace(spec, scenes=tuple(scenes))


def add_flash(
    rng: np.random.Generator, spec: VideoSpec, min_seconds: float = 1.0, max_seconds: float = 1.5
) -> VideoSpec:
    """The video with an object flashed at its centre for min..max seconds at a uniform moment; the object is
    none of the video's scene objects, still or moving at random."""
    shown = {(s.colour, s.shape) for s in spec.scenes}
    objects = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in shown]
    if not objects:  # a long video shows every object: reserve one for the flash and recolour its scenes
        objects = [(c, s) for c in COLOURS for s in SHAPES]
    colour, shape = objects[int(rng.integers(len(objects)))]
    spec = without_object(spec, (colour, shape))
    low, high = scene_frame_range(spec.fps, min_seconds, max_seconds)
    length = min(int(rng.integers(low, high + 1)), spec.num_frames)
    start = int(rng.integers(spec.num_frames - length + 1))
    flash = Flash(colour, shape, start, start + length - 1, moving=bool(rng.integers(2)))
    return dataclasses.replace(spec, flash=flash)


def video_rng(seed: int, index: int) -> np.random.Generator:
    """Video `index`'s own stream: the same video whatever the number of videos generated."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 0)))
