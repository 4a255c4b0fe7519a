"""The one video pipeline: tower features -> frame tokens -> SceneTilling -> segments -> bridge -> readout -> projector.

    (tokens,) = model.encode_videos([pixels])              # a whole video (T, 3, H, W): the offline path
    stream = model.open_stream()                           # a live stream, frame by frame, flat memory
    for closed in stream.push(pixels, times):              # (N, 3, H, W) preprocessed frames at `times` seconds
        print(closed.time, stream.visual_tokens(closed.readout).shape)
    stream.finish()

Whole videos (`VideoLLaMBForCausalLM.encode_videos`) and streams (`VideoStream`) share every step they have in
common: `pool_frames` (tower hidden states -> the CLS and the pooled tokens the bridge reads; SceneTilling compares
one or the other, `scenetilling_feature`), `segment_tokens` (a segment's frames -> at most frames_per_segment of
them, spread evenly, in one row), `MemoryBridge.step` and `MemoryBridge.readout` (one segment through the bridge,
and what the LLM reads after it), and `VideoLLaMBForCausalLM.project` (that readout -> the LLM's tokens). They
differ only where a stream cannot see the future:
- segmentation: offline SceneTilling ranks the depths of the whole video (`BridgeConfig.scenetilling_*`); a
  stream's `OnlineSceneTiller` decides each cut from the frames seen so far (`BridgeConfig.stream_scenetilling_*`);
- the tower: a streamed frame attends only to the earlier frames of its temporal window (the same features for a
  `temporal_causal` tower);
- the open segment keeps at most OPEN_SEGMENT_FACTOR x frames_per_segment of its frames (every stride-th, the
  stride doubling as it grows), so a longer segment is subsampled from those;
- a stream's bridge cache (and the mem variant's memories) keep `stream_max_cache_segments` blocks.
Wherever the two segment alike (the same cuts, segments of at most 2 x frames_per_segment frames, a causal tower),
a whole video fed as a stream gives the offline memory, tokens and answer (tests/model/test_stream.py).

What a stream keeps: the bridge state, the tower's window cache (the temporal keys and values of the window's
earlier frames, and those frames preprocessed, from which a restored state rebuilds the cache), the kept frames of
the open segment and the time span of each closed segment. Nothing else grows with the length of the stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from llava.model.bridge import BridgeState
from llava.model.config import BridgeConfig
from llava.model.languagebind import StreamCache
from llava.video.scenetilling import OnlineSceneTiller, segment, segments_from_boundaries, subsample_segment

if TYPE_CHECKING:
    from llava.model.videollamb import VideoLLaMBForCausalLM

OPEN_SEGMENT_FACTOR = 2  # an open segment keeps at most this many times frames_per_segment of its frames


@dataclass
class FrameTokens:
    """What the tower gives per frame: the CLS feature and the pooled patch tokens."""

    cls: Tensor  # (T, D)
    patches: Tensor  # (T, tokens_per_frame, D): the pooled patches, after the CLS when the bridge reads it too

    def scene_features(self, feature: str) -> Tensor:
        """What SceneTilling compares (`BridgeConfig.scenetilling_feature`): "cls" (T, D), or "tokens", each
        frame's bridge tokens as one vector (T, tokens_per_frame * D)."""
        return self.cls if feature == "cls" else self.patches.flatten(1)


def pool_frames(features: Tensor, config: BridgeConfig) -> FrameTokens:
    """Tower hidden states (T, 1+P, D) -> CLS (T, D) and the bridge's tokens (T, tokens_per_frame, D): the
    patches pooled to pool x pool, after the CLS itself if `frame_cls_token`."""
    cls, patches = features[:, 0], features[:, 1:]
    t, p, d = patches.shape
    grid = int(p**0.5)
    patches = patches.transpose(1, 2).reshape(t, d, grid, grid)
    pool = F.adaptive_max_pool2d if config.frame_pool == "max" else F.adaptive_avg_pool2d
    tokens = pool(patches, config.pool_size).flatten(2).transpose(1, 2)  # (T, pool*pool, D)
    if config.frame_cls_token:
        tokens = torch.cat([cls[:, None], tokens], dim=1)
    return FrameTokens(cls=cls, patches=tokens)


def segment_tokens(frames: Tensor | Sequence[Tensor], start: int, end: int, max_frames: int) -> Tensor:
    """The tokens of frames start..end (inclusive; each frame (tokens_per_frame, D)), at most `max_frames` of
    them spread evenly (`subsample_segment`), as one row (n * tokens_per_frame, D) for the bridge."""
    return torch.cat([frames[i] for i in subsample_segment(start, end, max_frames)])


def offline_boundaries(frames: FrameTokens, config: BridgeConfig) -> list[int]:
    """A whole video's cuts: SceneTilling on its frames' features (`scenetilling_*`); the last frame of each
    segment."""
    features = frames.scene_features(config.scenetilling_feature).detach()  # the release's precision: model dtype
    boundaries = segment(
        features if config.scenetilling_precision == "feature_dtype" else features.float(),
        k=config.scenetilling_k,
        alpha=config.scenetilling_alpha,
        max_cuts=config.scenetilling_max_cuts,
        min_length=config.scenetilling_min_length,
        precision=config.scenetilling_precision,
    )
    return boundaries


def offline_segments(frames: FrameTokens, config: BridgeConfig) -> list[Tensor]:
    """A whole video's segments: `offline_boundaries`, then `segment_tokens`."""
    return [
        segment_tokens(frames.patches, start, end, config.frames_per_segment)
        for start, end in segments_from_boundaries(offline_boundaries(frames, config))
    ]  # each (n_s * tokens_per_frame, D)


@dataclass
class StreamSettings:
    """How a stream segments and what it keeps. The defaults are the checkpoint's (`from_config`, the
    `BridgeConfig.stream_*` fields); a changed copy (`dataclasses.replace`) overrides them at run time."""

    alpha: float  # online SceneTilling: standard deviations above the running mean depth
    min_depth: float  # online SceneTilling: absolute floor of a cut's depth
    min_segment_frames: int
    max_segment_frames: int | None  # force a cut in a long static scene
    max_cache_segments: int | None  # bridge cache cap (None: the config's max_cache_segments, for whole videos)

    @classmethod
    def from_config(cls, config: BridgeConfig) -> StreamSettings:
        return cls(
            alpha=config.stream_scenetilling_alpha,
            min_depth=config.stream_scenetilling_min_depth,
            min_segment_frames=config.stream_scenetilling_min_length,
            max_segment_frames=config.stream_scenetilling_max_length,
            max_cache_segments=config.stream_max_cache_segments,
        )

    def tiller(self) -> OnlineSceneTiller:
        """A fresh online segmenter with these settings."""
        return OnlineSceneTiller(
            alpha=self.alpha,
            min_depth=self.min_depth,
            min_length=self.min_segment_frames,
            max_length=self.max_segment_frames,
        )


@dataclass
class StreamState:
    """Everything a stream carries (the serving layer saves it, with its captions, as one file)."""

    bridge: BridgeState
    tiller: dict  # OnlineSceneTiller.state_dict(): its settings and where it stands
    tower_cache: StreamCache = field(default_factory=StreamCache)  # rebuilt from window_pixels, not saved
    window_pixels: Tensor | None = None  # (n, 3, H, W): the frames of the tower's current window, preprocessed
    open_tokens: list[Tensor] = field(default_factory=list)  # pooled tokens of kept frames of the open segment
    open_stride: int = 1  # keep every open_stride-th frame of the open segment
    open_seen: int = 0  # frames of the open segment seen so far
    open_start: float = 0.0
    last_time: float = 0.0
    readout: Tensor | None = None  # what the LLM reads after the last closed segment (unprojected)
    segments: list[tuple[float, float]] = field(default_factory=list)  # (first, last frame time) of closed ones


@dataclass
class ClosedSegment:
    index: int  # the frame of the push that showed the segment had ended (the next segment's first)
    time: float  # the time of the segment's last frame
    readout: Tensor  # (N, d): what the LLM reads after it, unprojected (`VideoStream.visual_tokens` projects it)
    inputs: Tensor  # (1, n, d): its tokens as the bridge read them (answer evidence passes them through again)


class StreamMismatch(ValueError):
    """A restored state does not fit this model (another memory size, frames of another size)."""


class VideoStream:
    """One live stream through the model: each frame passes the tower once, each segment the bridge once."""

    def __init__(self, model: VideoLLaMBForCausalLM, settings: StreamSettings | None = None) -> None:
        self.model = model
        self.settings = settings or StreamSettings.from_config(model.config.bridge_config)
        self.state = self.fresh_state()

    def fresh_state(self) -> StreamState:
        return StreamState(bridge=self.model.bridge.init_state(1), tiller=self.settings.tiller().state_dict())

    def reset(self) -> None:
        """Start a new stream: fresh memory, segmenter and clock."""
        self.state = self.fresh_state()

    @torch.inference_mode()
    def push(self, pixels: Tensor, times: Sequence[float]) -> list[ClosedSegment]:
        """Preprocessed frames (N, 3, H, W) at `times` seconds, in order -> the segments they close, in order.

        The tower encodes the frames of each temporal window together; the result is the same however a stream
        is split into pushes."""
        if len(pixels) != len(times):
            raise ValueError(f"{len(pixels)} frames but {len(times)} times")
        if not len(pixels):
            return []
        param = next(self.model.parameters())
        pixels = pixels.to(device=param.device, dtype=param.dtype)
        features, self.state.tower_cache = self.model.video_tower.encode_stream_frames(pixels, self.state.tower_cache)
        self._keep_window(pixels)
        tokens = pool_frames(features, self.model.config.bridge_config)
        compared = tokens.scene_features(self.model.config.bridge_config.scenetilling_feature).float().cpu().numpy()
        tiller = self.settings.tiller()
        tiller.load_state_dict(self.state.tiller)
        closed = []
        for index, time in enumerate(times):
            if tiller.push(compared[index]) and self.state.open_seen:
                closed.append(self._close_segment(index))
            self._keep_frame(tokens.patches[index], time)
            self.state.last_time = time
        self.state.tiller = tiller.state_dict()
        return closed

    @torch.inference_mode()
    def finish(self) -> ClosedSegment | None:
        """End of stream: close the open segment (None when it is empty)."""
        if not self.state.open_seen:
            return None
        return self._close_segment(0)

    @torch.inference_mode()
    def current_readout(self) -> Tensor | None:
        """What the LLM reads now: with an open segment, that segment passed through the bridge tentatively (the
        state is unchanged); else the readout of the last closed segment (None before any frame)."""
        if self.state.open_seen:
            return self._step(self.state.bridge)[1]
        return self.state.readout

    @torch.inference_mode()
    def open_segment(self) -> ClosedSegment | None:
        """The open segment as if it closed now, passed through the bridge tentatively (the state is unchanged);
        None when no frame is open."""
        if not self.state.open_seen:
            return None
        _, readout, inputs = self._step(self.state.bridge)
        return ClosedSegment(0, self.state.last_time, readout, inputs)

    @torch.no_grad()
    def visual_tokens(self, readout: Tensor) -> Tensor:
        """A readout (N, d) -> the LLM's visual tokens (N, h)."""
        return self.model.project(readout)

    def restore(self, state: StreamState) -> None:
        """Continue from a saved state: checks it fits this model and rebuilds the tower's window cache from the
        window's frames. Raises StreamMismatch when it does not fit."""
        expected = tuple(self.model.bridge.init_state(1).memory.shape)
        if tuple(state.bridge.memory.shape) != expected:
            raise StreamMismatch(f"memory {tuple(state.bridge.memory.shape)}, this model's {expected}")
        compared, size = state.tiller.get("prev_feature"), self.scene_feature_size()
        if compared is not None and len(compared) != size:
            feature = self.model.config.bridge_config.scenetilling_feature
            raise StreamMismatch(
                f"SceneTilling compared {len(compared)} values a frame, this model {size} (scenetilling_feature "
                f"{feature!r})"
            )
        if state.window_pixels is not None:
            with torch.inference_mode():
                try:
                    _, state.tower_cache = self.model.video_tower.encode_stream_frames(state.window_pixels)
                except ValueError as err:  # frames of another size: another model's tower
                    raise StreamMismatch(str(err)) from None
        self.state = state

    def scene_feature_size(self) -> int:
        """How many values of each frame SceneTilling compares (`FrameTokens.scene_features`)."""
        config = self.model.config
        bridge = config.bridge_config
        return config.vision_config.hidden_size * (
            bridge.tokens_per_frame if bridge.scenetilling_feature == "tokens" else 1
        )

    def _keep_window(self, pixels: Tensor) -> None:
        """Keep the frames of the tower's current window (at most temporal_window), from which a restored state
        rebuilds the tower's cache: far smaller on disk than the cache's keys and values of every layer."""
        s = self.state
        recent = pixels if s.window_pixels is None else torch.cat([s.window_pixels, pixels])
        s.window_pixels = recent[len(recent) - s.tower_cache.position :]

    def _keep_frame(self, patches: Tensor, time: float) -> None:
        """patches (tokens_per_frame, D) of the open segment's next frame: kept if on its stride, and the kept
        frames halved (the stride doubled) when there are more than OPEN_SEGMENT_FACTOR x frames_per_segment."""
        s = self.state
        if s.open_seen == 0:
            s.open_start = time
        if s.open_seen % s.open_stride == 0:
            s.open_tokens.append(patches)
        s.open_seen += 1
        if len(s.open_tokens) > OPEN_SEGMENT_FACTOR * self.model.config.bridge_config.frames_per_segment:
            s.open_tokens, s.open_stride = s.open_tokens[::2], s.open_stride * 2

    @property
    def _cache_cap(self) -> int | None:
        cap = self.settings.max_cache_segments
        return self.model.config.bridge_config.max_cache_segments if cap is None else cap

    def _step(self, state: BridgeState) -> tuple[BridgeState, Tensor, Tensor]:
        """The open segment through the bridge from `state` -> the new state, the LLM's (unprojected) readout and
        the segment's tokens as the bridge read them."""
        kept = self.state.open_tokens
        tokens = segment_tokens(kept, 0, len(kept) - 1, self.model.config.bridge_config.frames_per_segment)[None]
        cap = self._cache_cap
        taken = self.model.bridge.advance(state, tokens, cache_cap=cap)  # tokens (1, n * tokens_per_frame, D)
        new_state = taken.state
        if new_state.memories and cap is not None:  # the mem variant keeps every memory for the LLM: cap them too
            new_state.memories, new_state.memory_masks = new_state.memories[-cap:], new_state.memory_masks[-cap:]
        return new_state, self.model.bridge.readout(new_state, taken.hidden, 0, tokens.shape[1]), taken.inputs

    def _close_segment(self, index: int) -> ClosedSegment:
        """The open segment through the bridge, closed by the frame `index` of the push (0 at the end)."""
        s = self.state
        s.bridge, s.readout, inputs = self._step(s.bridge)
        s.segments.append((s.open_start, s.last_time))
        s.open_tokens, s.open_stride, s.open_seen = [], 1, 0
        return ClosedSegment(index, s.last_time, s.readout, inputs)
