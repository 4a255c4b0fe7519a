"""StreamingSession: incremental VideoLLaMB over a live stream, with flat memory.

    session = StreamingSession.from_pretrained()                 # the bundled demo model
    for t, frame in open_video("playground/demo/shapes.mp4").iter_frames(fps=1):
        for event in session.push(frame, t):
            print(event)                                         # (Video Time = 3.0s) Assistant: a green triangle
    session.finish()

The video side is the model's stream (`llava.model.stream.VideoStream`, from `model.open_stream()`): each frame
passes the tower once, the online SceneTilling segmenter (set by the checkpoint's `stream_scenetilling_*` fields)
decides cuts from the frames seen so far, each closed segment passes the Memory Bridge once, and nothing grows with
the length of the stream. This session adds what is about serving: when a caption is spoken (`StreamingPolicy`),
questions, prompts, and the state file (the stream's state and the last caption).
"""

from __future__ import annotations

import itertools
import pickle
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from llava.atomic import atomic_path
from llava.constants import TIME_PLACEHOLDER
from llava.conversation import DEFAULT_TEMPLATE, get_template
from llava.errors import LlavaError
from llava.mm_utils import prompt_tensor
from llava.model.bridge import BridgeState
from llava.model.builder import load_pretrained_model
from llava.model.stream import StreamMismatch, StreamSettings, StreamState
from llava.model.videollamb import PromptPrefix
from llava.serve.chat_session import (
    DEFAULT_DEVICE,
    SHORT_MAX_NEW_TOKENS,
    ChatSession,
    GenerationSettings,
    checkpoint_or_demo,
    fit_to_context,
)
from llava.serve.evidence import Evidence, VideoSegments, answer_evidence, joined_spans
from llava.serve.time_answers import evidence_method, fill_times
from llava.video.transforms import VisualProcessor

CAPTION_PROMPT = "Describe the video in one sentence."
EVIDENCE_SEGMENTS = 64  # an answer's evidence covers at most this many of the latest segments (flat memory)


@dataclass
class StreamingPolicy:
    """When a caption is spoken, and how (how the stream segments is the model's: `StreamSettings`)."""

    min_caption_gap: float = 0.0  # seconds between two captions
    skip_repeated: bool = True  # do not say the same caption twice in a row
    prompt: str = CAPTION_PROMPT
    caption_batch: int = 8  # captions of the scenes that end in one push are generated together, this many at once


@dataclass
class StreamEvent:
    time: float
    role: str  # "User" or "Assistant"
    text: str
    evidence: list[Evidence] | None = None  # an answer's evidence, best first (`StreamingSession.ask_with_evidence`)

    def __str__(self) -> str:
        return f"(Video Time = {self.time:g}s) {self.role}: {self.text}"


@dataclass
class CaptionState:
    """The last caption spoken (saved with the stream's state)."""

    last_caption: str | None = None
    last_caption_time: float = float("-inf")


class StreamingSession:
    """Captions and answers over a live stream. `stream_settings` overrides how the model's stream segments and
    what it keeps (default: the checkpoint's config)."""

    def __init__(
        self,
        model,
        tokenizer,
        processor: VisualProcessor,
        policy: StreamingPolicy | None = None,
        conv_mode: str = DEFAULT_TEMPLATE,
        settings: GenerationSettings | None = None,
        stream_settings: StreamSettings | None = None,
    ) -> None:
        self.model, self.tokenizer, self.processor = model, tokenizer, processor
        self.policy = policy or StreamingPolicy()
        self.conv_mode = conv_mode
        self.settings = settings or GenerationSettings(max_new_tokens=SHORT_MAX_NEW_TOKENS)
        self.stream = model.open_stream(stream_settings)
        self.captions = CaptionState()
        # (first and last frame time, its tokens as the bridge read them) of the latest segments, for evidence
        self.recent: deque[tuple[tuple[float, float], Tensor]] = deque(maxlen=EVIDENCE_SEGMENTS)
        self._prefix: PromptPrefix | None = None  # the KV cache of the text before the video in every prompt

    @classmethod
    def from_pretrained(
        cls, model_path: str | Path | None = None, device: str = DEFAULT_DEVICE, static_kv_cache: bool = False, **kwargs
    ) -> StreamingSession:
        """model_path None = the bundled demo model; other keyword arguments go to the session."""
        tokenizer, model, processor, _ = load_pretrained_model(
            checkpoint_or_demo(model_path), device=device, static_kv_cache=static_kv_cache
        )
        return cls(model, tokenizer, processor, **kwargs)

    @property
    def state(self) -> StreamState:
        """The model's stream state: memory, segmenter, open segment, clock and the segments' times."""
        return self.stream.state

    def reset(self) -> None:
        """Start a new stream: fresh memory, segmenter, clock and history."""
        self.stream.reset()
        self.captions = CaptionState()
        self.recent.clear()

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
        with torch.inference_mode():
            pixels = self.processor.video(frames)  # (N, 3, H, W)
        closed = self.stream.push(pixels, times)
        self._keep_recent(closed)
        events: list[list[StreamEvent]] = [[] for _ in times]
        for segment, event in zip(closed, self._captions([(c.time, c.readout) for c in closed]), strict=True):
            events[segment.index] += event
        return events

    def push_timed_frames(self, frames: Sequence[tuple[float, np.ndarray]]) -> list[StreamEvent]:
        """(time, frame) pairs, in order -> their captions, each stamped with the time of the frame that showed
        its scene had ended (when a viewer learns of it), rather than the scene's last frame. Frames may change
        size midway (a stream that changes resolution): each run of one size is pushed together."""
        stamped = []
        for _, group in itertools.groupby(frames, key=lambda item: item[1].shape):
            run = list(group)
            times = [time for time, _ in run]
            per_frame = self.push_frames(np.stack([frame for _, frame in run]), times)
            stamped += [
                StreamEvent(time, e.role, e.text) for time, events in zip(times, per_frame, strict=True) for e in events
            ]
        return stamped

    def _captions(self, ended: list[tuple[float, Tensor]]) -> list[list[StreamEvent]]:
        """(time, readout) of scenes that ended, in order -> the caption event each gets (none, or one), by the
        policy: none within min_caption_gap of the last caption, none repeating the last caption."""
        s, p = self.captions, self.policy
        # the last caption only gets later: a scene too close to it now is too close to any caption said meanwhile
        wanted = [time - s.last_caption_time >= p.min_caption_gap for time, _ in ended]
        texts = iter(
            self._answers(p.prompt, [readout for (_, readout), want in zip(ended, wanted, strict=True) if want])
        )
        events = []
        for (time, _), want in zip(ended, wanted, strict=True):
            text = next(texts) if want else None
            said = (
                text is not None
                and time - s.last_caption_time >= p.min_caption_gap
                and not (p.skip_repeated and text == s.last_caption)
            )
            if said:
                s.last_caption, s.last_caption_time = text, time
            events.append([StreamEvent(time, "Assistant", text)] if said and text is not None else [])
        return events

    @torch.no_grad()
    def finish(self) -> list[StreamEvent]:
        """End of stream: close the open segment (and caption it)."""
        closed = self.stream.finish()
        if closed is None:
            return []
        self._keep_recent([closed])
        (events,) = self._captions([(closed.time, closed.readout)])
        return events

    # ----- questions
    @torch.no_grad()
    def ask(self, question: str) -> str:
        """Answer from the current state, including the open segment (passed through the bridge tentatively); a
        time the model writes as the placeholder is filled from the answer's evidence (`ask_with_evidence`)."""
        reply = self._reply(question)
        if TIME_PLACEHOLDER not in reply:
            return reply
        return fill_times(reply, self._evidence(question, reply))

    def _reply(self, question: str) -> str:
        """The model's reply from the current state, as generated."""
        readout = self.stream.current_readout()
        if readout is None:
            raise LlavaError("no frames have been seen yet")
        (reply,) = self._answers(question, [readout])
        return reply

    def _keep_recent(self, closed: Sequence) -> None:
        """The first and last frame times of the segments just closed, and their tokens as the bridge read them."""
        shown = self.state.segments[len(self.state.segments) - len(closed) :]
        self.recent.extend(zip(shown, (c.inputs for c in closed), strict=True))

    @torch.no_grad()
    def ask_with_evidence(self, question: str) -> tuple[str, list[Evidence]]:
        """The answer (`ask`) and its evidence, best first, over the latest EVIDENCE_SEGMENTS segments and the open
        one: each segment scored by how much less likely the answer becomes when that segment is left out and the
        others pass through the bridge again from a fresh memory ("without" of `llava.serve.evidence`, as for a
        whole video). A stream keeps the segments' tokens since this session started (not across a restored state).
        A time the model writes as the placeholder is filled from this evidence (`llava.serve.time_answers`)."""
        reply = self._reply(question)
        evidence = self._evidence(question, reply)
        return fill_times(reply, evidence), evidence

    def _evidence(self, question: str, reply: str) -> list[Evidence]:
        """The evidence of the model's `reply` to `question` over the kept segments and the open one."""
        kept = list(self.recent)
        open_segment = self.stream.open_segment()
        if open_segment is not None:
            kept.append(((self.state.open_start, self.state.last_time), open_segment.inputs))
        if not kept:
            return []
        segments = VideoSegments(joined_spans([shown for shown, _ in kept]), None, [i for _, i in kept], [])
        media = self.stream.visual_tokens(self.stream.current_readout())
        chat = ChatSession(self.model, self.tokenizer, self.processor, conv_mode=self.conv_mode, media=media)
        return answer_evidence(chat, segments, question, reply, evidence_method(reply))

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
            features = [self.stream.visual_tokens(r) for r in readouts[start : start + size]]  # each (N, h)
            longest = input_ids.shape[1] - 1 + max(len(f) for f in features)  # the placeholder becomes N tokens
            settings = fit_to_context(self.settings, longest, context)  # never past the context
            output = self.model.generate(
                input_ids.expand(len(features), -1),
                visual_features=features,
                prompt_prefix=prefix,
                pad_token_id=self.tokenizer.pad_token_id,
                **settings.kwargs(),
            )
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
        """Write the whole stream state (memory, cache, clock, segment times, last caption) atomically."""
        with atomic_path(path) as tmp:
            torch.save(_state_to_dict(self.state, self.captions), tmp)

    def load_state(self, path: str | Path) -> None:
        try:
            raw = torch.load(Path(path), map_location=self._device_dtype[0], weights_only=True)
            state, captions = _state_from_dict(raw)
        except KeyError as err:
            raise LlavaError(f"{path}: not a saved stream state of this version (no {err})") from None
        except (OSError, RuntimeError, TypeError, EOFError, pickle.UnpicklingError) as err:
            raise LlavaError(f"{path}: not a saved stream state ({err})") from None
        try:
            self.stream.restore(state)
        except StreamMismatch as err:
            raise LlavaError(f"{path}: saved by a different model ({err})") from None
        self.captions = captions

    @property
    def frames_seen(self) -> bool:
        """Whether any frame has been pushed into this stream (restored states included)."""
        return bool(self.state.segments) or self.state.open_seen > 0


def _state_to_dict(state: StreamState, captions: CaptionState) -> dict:
    """Plain containers of tensors and numbers, loadable with `torch.load(weights_only=True)`."""
    b = state.bridge
    return {
        "bridge": {
            "memory": b.memory,
            "cache": b.cache,
            "cache_masks": b.cache_masks,
            "num_segments": b.num_segments,
            "memories": b.memories,
            "memory_masks": b.memory_masks,
        },
        "tiller": state.tiller,
        "tower_window": state.window_pixels,
        "open": {
            "tokens": state.open_tokens,
            "stride": state.open_stride,
            "seen": state.open_seen,
            "start": state.open_start,
        },
        "last_time": state.last_time,
        "readout": state.readout,
        "segments": [list(seg) for seg in state.segments],
        "last_caption": captions.last_caption,
        "last_caption_time": captions.last_caption_time,
    }


def _state_from_dict(raw: dict) -> tuple[StreamState, CaptionState]:
    opened = raw["open"]
    state = StreamState(
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
    )
    return state, CaptionState(raw["last_caption"], raw["last_caption_time"])
