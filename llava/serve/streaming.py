"""StreamingSession: incremental VideoLLaMB over a live stream, with flat memory.

    session = StreamingSession.from_pretrained()                 # the bundled demo model
    for t, frame in open_video("playground/demo/shapes.mp4").iter_frames(fps=1):
        for event in session.push(frame, t):
            print(event)                                         # (Video Time = 3.0s) Assistant: a green triangle
    session.finish()

Each frame passes the tower once (`encode_stream_frames`), the online SceneTilling segmenter decides cuts from
the frames seen so far, each closed segment passes the Memory Bridge once (`bridge.step`), and captions and
answers read the current state. What is kept: the bridge state (memory plus a cache capped at
`max_cache_segments` blocks), the tower's window cache (the temporal keys and values of the window's earlier
frames; a saved state holds those frames instead, at most temporal_window of them, and loading rebuilds the
cache), and at most 2 x frames_per_segment frames of the open segment (decimated as it grows). Nothing grows with
the length of the stream.
"""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from llava.atomic import atomic_path
from llava.conversation import get_template
from llava.errors import CheckpointError, LlavaError
from llava.mm_utils import prompt_tensor
from llava.model.bridge import BridgeState
from llava.model.builder import load_pretrained_model
from llava.model.languagebind import StreamCache
from llava.model.videollamb import PromptPrefix
from llava.serve import engine
from llava.serve.engine import GenerationSettings, fit_to_context
from llava.video.scenetilling import OnlineSceneTiller, subsample_segment
from llava.video.transforms import VisualProcessor

CAPTION_PROMPT = "Describe the video in one sentence."


@dataclass
class StreamingPolicy:
    """When segments close and when a caption is spoken."""

    alpha: float = 0.5  # online SceneTilling: standard deviations above the running mean depth
    min_depth: float = 0.1  # online SceneTilling: absolute floor of a cut's depth
    min_segment_frames: int = 1
    max_segment_frames: int | None = None  # force a cut in a long static scene
    min_caption_gap: float = 0.0  # seconds between two captions
    skip_repeated: bool = True  # do not say the same caption twice in a row
    max_cache_segments: int = 64  # bridge cache cap: memory stays flat however long the stream
    prompt: str = CAPTION_PROMPT
    caption_batch: int = 8  # captions of the scenes that end in one push are generated together, this many at once


@dataclass
class StreamEvent:
    time: float
    role: str  # "User" or "Assistant"
    text: str

    def __str__(self) -> str:
        return f"(Video Time = {self.time:g}s) {self.role}: {self.text}"


@dataclass
class StreamState:
    """Everything a stream carries: saved and loaded as one file."""

    bridge: BridgeState
    tiller: dict
    tower_cache: StreamCache = field(default_factory=StreamCache)  # rebuilt from window_pixels, not saved
    window_pixels: Tensor | None = None  # (n, 3, H, W): the frames of the tower's current window, preprocessed
    open_tokens: list[Tensor] = field(default_factory=list)  # pooled tokens of kept frames of the open segment
    open_stride: int = 1  # keep every open_stride-th frame of the open segment
    open_seen: int = 0  # frames of the open segment seen so far
    open_start: float = 0.0
    last_time: float = 0.0
    readout: Tensor | None = None  # what the LLM reads after the last closed segment (unprojected)
    segments: list[tuple[float, float]] = field(default_factory=list)
    last_caption: str | None = None
    last_caption_time: float = float("-inf")


class StreamingSession:
    def __init__(self, model, tokenizer, processor: VisualProcessor, policy: StreamingPolicy | None = None,
                 conv_mode: str = "llava_v1", settings: GenerationSettings | None = None) -> None:
        self.model, self.tokenizer, self.processor = model, tokenizer, processor
        self.policy = policy or StreamingPolicy()
        self.conv_mode = conv_mode
        self.settings = settings or GenerationSettings(max_new_tokens=32)
        self.state = self._fresh_state()
        self._prefix: PromptPrefix | None = None  # the KV cache of the text before the video in every prompt

    @classmethod
    def from_pretrained(cls, model_path: str | Path | None = None, device: str = "auto", static_kv_cache: bool = False,
                        **kwargs) -> "StreamingSession":
        """model_path None = the bundled demo model; other keyword arguments go to the session."""
        if model_path is None:
            model_path = engine.DEMO_CHECKPOINT
            if not model_path.is_dir():
                raise CheckpointError(
                    f"the bundled demo model {model_path} is missing; build it with `make demo-model` "
                    "(or `bash scripts/train_tiny_demo.sh`), or pass --model-path"
                )
        tokenizer, model, processor, _ = load_pretrained_model(model_path, device=device,
                                                               static_kv_cache=static_kv_cache)
        return cls(model, tokenizer, processor, **kwargs)

    def reset(self) -> None:
        """Start a new stream: fresh memory, segmenter, clock and history."""
        self.state = self._fresh_state()

    def _fresh_state(self) -> StreamState:
        p = self.policy
        tiller = OnlineSceneTiller(alpha=p.alpha, min_depth=p.min_depth, min_length=p.min_segment_frames,
                                   max_length=p.max_segment_frames)
        return StreamState(bridge=self.model.bridge.init_state(1), tiller=tiller.state_dict())

    @property
    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        param = next(self.model.parameters())
        return param.device, param.dtype

    # ----- frames in
    def push(self, frame: np.ndarray, time: float) -> list[StreamEvent]:
        """One decoded frame (H, W, 3) uint8 at `time` seconds -> the captions this frame triggers."""
        return self.push_frames(frame[None], [time])[0]

    @torch.no_grad()
    def push_frames(self, frames: np.ndarray, times: Sequence[float]) -> list[list[StreamEvent]]:
        """Decoded frames (N, H, W, 3) uint8 at `times` seconds, in order -> the captions each frame triggers.

        The same as pushing them one at a time, except that the tower encodes the frames of each temporal window
        (and whole windows) together, and the captions of the scenes that end among them are generated together
        (`StreamingPolicy.caption_batch` at a time, one at a time with a static KV cache): faster whenever frames
        come faster than they are processed (a file, a backlog). Padded batches round differently, so in low
        precision (bf16) a caption may rarely differ by a token; in float32 they are the same."""
        if len(frames) != len(times):
            raise ValueError(f"{len(frames)} frames but {len(times)} times")
        if not len(frames):
            return []
        device, dtype = self._device_dtype
        with torch.inference_mode():  # the tower (and `_step` the bridge); captions are generated in no-grad mode
            pixels = self.processor.video(frames).to(device=device, dtype=dtype)
            tower = self.model.video_tower
            features, self.state.tower_cache = tower.encode_stream_frames(pixels, self.state.tower_cache)
            self._keep_window(pixels)
            tokens = self.model.frame_tokens(features)
        cls = tokens.cls.float().cpu().numpy()
        tiller = OnlineSceneTiller()
        tiller.load_state_dict(self.state.tiller)
        ended: list[tuple[int, float, Tensor]] = []  # (frame index, time, readout) of each scene that ended
        for index, time in enumerate(times):
            if tiller.push(cls[index]) and self.state.open_seen:
                ended.append((index, self.state.last_time, self._close_segment()))
            self._keep_frame(tokens.patches[index], time)
            self.state.last_time = time
        self.state.tiller = tiller.state_dict()
        events: list[list[StreamEvent]] = [[] for _ in times]
        for (index, _, _), event in zip(ended, self._captions([(time, readout) for _, time, readout in ended])):
            events[index] += event
        return events

    def push_timed_frames(self, frames: Sequence[tuple[float, np.ndarray]]) -> list[StreamEvent]:
        """(time, frame) pairs, in order -> their captions, each stamped with the time of the frame that showed
        its scene had ended (when a viewer learns of it), rather than the scene's last frame. Frames may change
        size midway (a stream that changes resolution): each run of one size is pushed together."""
        stamped = []
        for _, run in itertools.groupby(frames, key=lambda item: item[1].shape):
            run = list(run)
            times = [time for time, _ in run]
            per_frame = self.push_frames(np.stack([frame for _, frame in run]), times)
            stamped += [StreamEvent(time, e.role, e.text) for time, events in zip(times, per_frame) for e in events]
        return stamped

    def _keep_window(self, pixels: Tensor) -> None:
        """Keep the frames of the tower's current window (at most temporal_window), from which a loaded state
        rebuilds the tower's cache: far smaller on disk than the cache's keys and values of every layer."""
        s = self.state
        recent = pixels if s.window_pixels is None else torch.cat([s.window_pixels, pixels])
        s.window_pixels = recent[len(recent) - s.tower_cache.position :]

    def _keep_frame(self, patches: Tensor, time: float) -> None:
        s = self.state
        if s.open_seen == 0:
            s.open_start = time
        if s.open_seen % s.open_stride == 0:
            s.open_tokens.append(patches)
        s.open_seen += 1
        if len(s.open_tokens) > 2 * self.model.config.bridge_config.frames_per_segment:
            s.open_tokens, s.open_stride = s.open_tokens[::2], s.open_stride * 2

    def _segment_tokens(self) -> Tensor:
        kept = self.state.open_tokens
        chosen = subsample_segment(0, len(kept) - 1, self.model.config.bridge_config.frames_per_segment)
        return torch.cat([kept[i] for i in chosen])[None]  # (1, n * pool*pool, D)

    @torch.inference_mode()
    def _step(self, state: BridgeState) -> tuple[BridgeState, Tensor]:
        """The bridge over the open segment; returns the new state and the LLM's (unprojected) readout."""
        tokens = self._segment_tokens()
        new_state, hidden = self.model.bridge.step(state, tokens, cache_cap=self.policy.max_cache_segments)
        if new_state.memories:  # the mem variant keeps every memory for the LLM: cap them like the cache
            new_state.memories = new_state.memories[-self.policy.max_cache_segments :]
            new_state.memory_masks = new_state.memory_masks[-self.policy.max_cache_segments :]
        return new_state, self.model.bridge.readout(new_state, hidden, 0, tokens.shape[1])

    def _close_segment(self) -> Tensor:
        """The open segment through the bridge; returns the readout its caption reads."""
        s = self.state
        s.bridge, s.readout = self._step(s.bridge)
        s.segments.append((s.open_start, s.last_time))
        s.open_tokens, s.open_stride, s.open_seen = [], 1, 0
        return s.readout

    def _captions(self, ended: list[tuple[float, Tensor]]) -> list[list[StreamEvent]]:
        """(time, readout) of scenes that ended, in order -> the caption event each gets (none, or one), by the
        policy: none within min_caption_gap of the last caption, none repeating the last caption."""
        s, p = self.state, self.policy
        # the last caption only gets later: a scene too close to it now is too close to any caption said meanwhile
        wanted = [time - s.last_caption_time >= p.min_caption_gap for time, _ in ended]
        texts = iter(self._answers(p.prompt, [readout for (_, readout), want in zip(ended, wanted) if want]))
        events = []
        for (time, _), want in zip(ended, wanted):
            text = next(texts) if want else None
            said = text is not None and time - s.last_caption_time >= p.min_caption_gap and not (
                p.skip_repeated and text == s.last_caption)
            if said:
                s.last_caption, s.last_caption_time = text, time
            events.append([StreamEvent(time, "Assistant", text)] if said else [])
        return events

    @torch.no_grad()
    def finish(self) -> list[StreamEvent]:
        """End of stream: close the open segment (and caption it)."""
        if not self.state.open_seen:
            return []
        (events,) = self._captions([(self.state.last_time, self._close_segment())])
        return events

    # ----- questions
    @torch.no_grad()
    def ask(self, question: str) -> str:
        """Answer from the current state, including the open segment (passed through the bridge tentatively)."""
        readout = self.state.readout
        if self.state.open_seen:
            _, readout = self._step(self.state.bridge)
        if readout is None:
            raise LlavaError("no frames have been seen yet")
        (answer,) = self._answers(question, [readout])
        return answer

    @torch.no_grad()
    def _answers(self, question: str, readouts: list[Tensor]) -> list[str]:
        """The answer to `question` from each readout, generated `caption_batch` readouts at a time (padded to
        the longest), going on from the KV cache of the text before the video. With a static KV cache: one at a
        time and the whole prompt read, so that one compiled decoding step serves every call."""
        if not readouts:
            return []
        conv = get_template(self.conv_mode)
        conv.append_message(conv.roles[0], f"<video>\n{question}")
        conv.append_message(conv.roles[1], None)
        device, _ = self._device_dtype
        input_ids = prompt_tensor(conv.get_prompt(), self.tokenizer).to(device)  # (1, L)
        static = self.model.uses_static_kv_cache
        size = 1 if static else max(1, self.policy.caption_batch)
        prefix = None if static else self._prompt_prefix(input_ids[0])
        context = self.model.config.text_config.max_position_embeddings
        answers = []
        for start in range(0, len(readouts), size):
            features = [self.model.mm_projector(r) for r in readouts[start : start + size]]  # each (N, h)
            longest = input_ids.shape[1] - 1 + max(len(f) for f in features)  # the placeholder becomes N tokens
            settings = fit_to_context(self.settings, longest, context)  # never past the context
            output = self.model.generate(input_ids.expand(len(features), -1), visual_features=features,
                                         prompt_prefix=prefix, pad_token_id=self.tokenizer.pad_token_id,
                                         **settings.kwargs())
            answers += [text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]
        return answers

    def _prompt_prefix(self, ids: Tensor) -> PromptPrefix | None:
        """The cached text before the video in `ids` (L,), computed once (again if that text changes)."""
        length = int((ids < 0).nonzero()[0, 0])  # the prompts hold a <video> placeholder
        if length == 0:
            return None
        if self._prefix is None or not torch.equal(self._prefix.ids, ids[:length]):
            self._prefix = self.model.cache_prompt_prefix(ids[:length])
        return self._prefix

    # ----- persistence
    def save_state(self, path: str | Path) -> None:
        """Write the whole stream state (memory, cache, clock, segment times) atomically."""
        with atomic_path(path) as tmp:
            torch.save(_state_to_dict(self.state), tmp)

    def load_state(self, path: str | Path) -> None:
        try:
            raw = torch.load(Path(path), map_location=self._device_dtype[0], weights_only=True)
            state = _state_from_dict(raw)
        except KeyError as err:
            raise LlavaError(f"{path}: not a saved stream state of this version (no {err})") from None
        except (OSError, RuntimeError, TypeError, EOFError, pickle.UnpicklingError) as err:
            raise LlavaError(f"{path}: not a saved stream state ({err})") from None
        expected = tuple(self.model.bridge.init_state(1).memory.shape)
        if tuple(state.bridge.memory.shape) != expected:
            raise LlavaError(f"{path}: saved by a different model (memory {tuple(state.bridge.memory.shape)}, "
                             f"this model's {expected})")
        if state.window_pixels is not None:
            with torch.inference_mode():
                try:
                    _, state.tower_cache = self.model.video_tower.encode_stream_frames(state.window_pixels)
                except ValueError as err:  # frames of another size: another model's tower
                    raise LlavaError(f"{path}: saved by a different model ({err})") from None
        self.state = state

    @property
    def frames_seen(self) -> bool:
        """Whether any frame has been pushed into this stream (restored states included)."""
        return bool(self.state.segments) or self.state.open_seen > 0


def _state_to_dict(state: StreamState) -> dict:
    """Plain containers of tensors and numbers, loadable with `torch.load(weights_only=True)`."""
    b = state.bridge
    return {
        "bridge": {"memory": b.memory, "cache": b.cache, "cache_masks": b.cache_masks,
                   "num_segments": b.num_segments, "memories": b.memories, "memory_masks": b.memory_masks},
        "tiller": state.tiller,
        "tower_window": state.window_pixels,
        "open": {"tokens": state.open_tokens, "stride": state.open_stride, "seen": state.open_seen,
                 "start": state.open_start},
        "last_time": state.last_time,
        "readout": state.readout,
        "segments": [list(seg) for seg in state.segments],
        "last_caption": state.last_caption,
        "last_caption_time": state.last_caption_time,
    }


def _state_from_dict(raw: dict) -> StreamState:
    opened = raw["open"]
    return StreamState(
        bridge=BridgeState(**raw["bridge"]),
        tiller=raw["tiller"],
        window_pixels=raw["tower_window"],
        open_tokens=list(opened["tokens"]),
        open_stride=opened["stride"],
        open_seen=opened["seen"],
        open_start=opened["start"],
        last_time=raw["last_time"],
        readout=raw["readout"],
        segments=[tuple(seg) for seg in raw["segments"]],
        last_caption=raw["last_caption"],
        last_caption_time=raw["last_caption_time"],
    )
