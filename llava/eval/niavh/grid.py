"""The grid of test videos (lengths x depths) and where the needle goes in each.

The original put the needle at second int(L * depth / 100): at depth 100% that is after the video's end.
Here the needle always lies inside: its first frame is at depth * (length - needle duration), so depth 0%
starts the video with the needle and depth 100% ends it with the needle. A cell whose needle covers the
whole video (L = 1 s with a one-second needle) is marked trivial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llava.errors import ConfigError

ORIGINAL_LENGTHS: tuple[int, ...] = tuple(int(x) for x in np.round(np.linspace(1, 320, 40)))  # seconds
ORIGINAL_DEPTHS: tuple[int, ...] = tuple(int(x) for x in np.round(np.linspace(0, 100, 12)))  # percent


def tidy(value: float) -> int | float:
    """4.0 -> 4, 2.5 -> 2.5 (grid values print and serialise as they were typed)."""
    return int(value) if float(value).is_integer() else float(value)


def parse_values(text: str, name: str, low: float, high: float | None = None) -> list[int | float]:
    """'4,8,16' -> [4, 8, 16] (duplicates dropped); every value a number in [low, high]."""
    values: list[int | float] = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"{name}: {part!r} is not a number (give a comma-separated list)") from None
        if not np.isfinite(value) or value < low or (high is not None and value > high):
            bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            raise ConfigError(f"{name}: {part} is out of range (must be {bounds})")
        values.append(tidy(value))
    if not values:
        raise ConfigError(f"{name} is empty")
    return list(dict.fromkeys(values))


@dataclass(frozen=True)
class Placement:
    """One cell's test video: `num_frames` frames at `fps`; the needle on frames start_frame ..
    start_frame + needle_frames - 1."""

    length: int | float  # seconds
    depth: int | float  # percent
    fps: float
    num_frames: int
    start_frame: int
    needle_frames: int

    @property
    def start_seconds(self) -> float:
        return self.start_frame / self.fps

    @property
    def end_seconds(self) -> float:
        return (self.start_frame + self.needle_frames) / self.fps

    @property
    def trivial(self) -> bool:
        """The needle covers the whole video."""
        return self.needle_frames >= self.num_frames


def place(length: float, depth: float, fps: float, needle_duration: float = 1.0) -> Placement:
    """Where the needle of `needle_duration` seconds goes in a video of `length` seconds at `fps`."""
    if not fps > 0:
        raise ConfigError(f"fps must be positive, got {fps}")
    if not 0 <= depth <= 100:
        raise ConfigError(f"depth must be between 0 and 100 percent, got {depth}")
    num_frames = round(length * fps)
    if num_frames < 1:
        raise ConfigError(f"a {length:g} s video at {fps:g} fps has no frame; use a longer length or a higher fps")
    needle_frames = min(num_frames, max(1, round(needle_duration * fps)))
    start = round(depth / 100 * (num_frames - needle_frames))
    return Placement(tidy(length), tidy(depth), float(fps), num_frames, start, needle_frames)
