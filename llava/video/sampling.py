"""Which frames of a video the model sees: one record (`FrameSampling`) and one function (`sample_video`).

    >>> sampling = FrameSampling(num_frames=24)                   # 24 frames spread uniformly (the original's way)
    >>> sampling = FrameSampling(fps=1.0, max_frames=512)         # one frame per second, at most 512
    >>> sampling = FrameSampling(fps=1.0, rate_rule="release_videollamb")  # the release's rate: a count, uniformly
    >>> pixels, seconds = sample_video("clip.mp4", sampling, transform=VisualProcessor().video)

A checkpoint's config records its `FrameSampling` (`num_frames`, `video_fps`, `max_frames`:
`VideoLLaMBConfig.frame_sampling`); training writes what it used, and every consumer (the chat engine, the
streaming front ends, the training dataset, the data check, the video-QA evaluation and the needle benchmark)
samples through `sample_video` with it, or with the same record changed by the same flags (`override`).
A stream has no length to spread frames over, so it is always read at a rate: `stream_fps`.

A rate has three rules (`rate_rule`, recorded as the config's `rate_sampling`): "presentation_time" (this
project's: one frame every 1/fps seconds by presentation time), and the released checkpoints' own, which turn the
rate into a count and spread it uniformly by index over the whole video (n = ceil(frames / nominal_fps * fps)):
"release_videollamb" rounds n down to a multiple of 8 (at least 8) before the cap, "release_mem" (the Mem
checkpoint's needle code) only caps it.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, replace

import numpy as np
import torch

from llava.errors import ConfigError, VideoError
from llava.video.decode import Source, load_video, load_video_fps, open_video
from llava.video.reader import Transform, VideoReader
from llava.video.timeline import rate_indices, uniform_indices

STREAM_FPS = 1.0  # the rate a stream is read at when the model samples uniformly (as the original's streaming)
RATE_RULES = ("presentation_time", "release_videollamb", "release_mem")
RELEASE_MULTIPLE = 8  # release_videollamb: a rate's frame count is a multiple of this (rounded down), at least this


def release_rate_count(num_frames: int, frame_rate: float, fps: float, max_frames: int, rule: str) -> int:
    """How many frames a released checkpoint's rate `rule` takes of a video of `num_frames` frames at nominal
    `frame_rate`: n = ceil(seconds * fps); "release_videollamb": max(8, n - n % 8), then at most `max_frames`;
    "release_mem": at most `max_frames`. The frames are then spread uniformly by index."""
    count = math.ceil(num_frames / frame_rate * fps)
    if rule == "release_videollamb":
        count = max(RELEASE_MULTIPLE, count - count % RELEASE_MULTIPLE)
    elif rule != "release_mem":
        raise ConfigError(f"{rule!r} is not a released checkpoint's rate rule")
    return min(count, max_frames)


@dataclass(frozen=True)
class FrameSampling:
    """How frames are chosen: `num_frames` uniformly over the whole video (fps None), or one frame every 1/fps
    seconds by presentation time, at most `max_frames` (a longer video gets `max_frames` frames uniformly).

    These defaults are the only ones: the config's fields and every flag read them from here.
    """

    num_frames: int = 16  # the release's uniform count
    fps: float | None = None  # None = uniform sampling
    max_frames: int = 512  # at a rate: the release's cap (its needle benchmark and streaming)
    rate_rule: str = "presentation_time"  # at a rate: which frames (RATE_RULES; the module docstring)

    def __post_init__(self) -> None:
        if isinstance(self.num_frames, bool) or not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise ConfigError(f"num_frames must be a whole number of at least 1, got {self.num_frames!r}")
        if isinstance(self.max_frames, bool) or not isinstance(self.max_frames, int) or self.max_frames < 1:
            raise ConfigError(f"max_frames must be a whole number of at least 1, got {self.max_frames!r}")
        if self.fps is not None and (
            isinstance(self.fps, bool)
            or not isinstance(self.fps, (int, float))
            or not math.isfinite(self.fps)
            or self.fps <= 0
        ):
            raise ConfigError(f"video_fps must be a positive number of frames per second, got {self.fps!r}")
        if self.rate_rule not in RATE_RULES:
            raise ConfigError(f"unknown rate_sampling {self.rate_rule!r}; valid: {', '.join(RATE_RULES)}")

    @property
    def uniform(self) -> bool:
        return self.fps is None

    @property
    def stream_fps(self) -> float:
        """The rate a stream (streaming CLI, the demo's Streaming tab) is read at."""
        return STREAM_FPS if self.fps is None else self.fps

    def override(
        self, num_frames: int | None = None, fps: float | None = None, max_frames: int | None = None
    ) -> FrameSampling:
        """This sampling changed by the flags given (None = not given), the same way in every front end:
        num_frames alone asks for uniform sampling; fps for a rate (num_frames then only applies if the rate is
        dropped again); max_frames sets the cap of a rate."""
        if num_frames is not None and fps is not None:
            raise ConfigError("give a frame count (--num-frames) or a rate (--video-fps), not both")
        changed = self
        if num_frames is not None:
            changed = replace(changed, num_frames=num_frames, fps=None)
        if fps is not None:
            changed = replace(changed, fps=fps)
        if max_frames is not None:
            changed = replace(changed, max_frames=max_frames)
        return changed

    def record(self) -> dict:
        """What a result file records about the sampling: {"num_frames"} uniformly, {"video_fps", "max_frames"}
        at a rate (and "rate_sampling" when a released checkpoint's rule picks the frames)."""
        if self.fps is None:
            return {"num_frames": self.num_frames}
        rule = {} if self.rate_rule == "presentation_time" else {"rate_sampling": self.rate_rule}
        return {"video_fps": self.fps, "max_frames": self.max_frames} | rule

    def indices(self, times: np.ndarray, frame_rate: float) -> np.ndarray:
        """The frames this sampling takes of frames already decoded, presented at `times` (seconds, in order) by a
        video of nominal `frame_rate`: the choice `sample_video` makes on the file (tested to agree)."""
        if self.fps is None:
            return uniform_indices(len(times), self.num_frames)
        if self.rate_rule != "presentation_time":
            count = release_rate_count(len(times), frame_rate, self.fps, self.max_frames, self.rate_rule)
            return uniform_indices(len(times), count)
        idx = rate_indices(times, self.fps, 0.5 / frame_rate)
        return idx if len(idx) <= self.max_frames else uniform_indices(len(times), self.max_frames)

    def describe(self) -> str:
        if self.fps is None:
            return f"{self.num_frames} frames uniformly"
        rule = "" if self.rate_rule == "presentation_time" else f" ({self.rate_rule} rule)"
        return f"{self.fps:g} frame(s) per second, at most {self.max_frames}{rule}"


def sample_video(
    source: Source | os.PathLike[str],
    sampling: FrameSampling,
    transform: Transform | None = None,
) -> tuple[np.ndarray | torch.Tensor, np.ndarray]:
    """The frames `sampling` chooses from a video (a path, URL or open reader), and their presentation times.

    Returns (T, H, W, 3) uint8 RGB frames, or `transform`'s outputs (applied while decoding, so a 4K file is never
    held at full size), and (T,) seconds.
    """
    if sampling.fps is None:
        return load_video(source, sampling.num_frames, transform=transform)
    if sampling.rate_rule == "presentation_time":
        return load_video_fps(source, fps=sampling.fps, max_frames=sampling.max_frames, transform=transform)
    with contextlib.ExitStack() as opened:
        video = source if isinstance(source, VideoReader) else opened.enter_context(open_video(source))
        if video.num_frames is None:
            raise VideoError(
                f"{video.source}: the {sampling.rate_rule} rule needs the video's length (not a live stream)"
            )
        count = release_rate_count(video.num_frames, video.fps, sampling.fps, sampling.max_frames, sampling.rate_rule)
        return load_video(video, count, transform=transform)
