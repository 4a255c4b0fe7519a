"""ChatSession: the inference object every front end and the evaluation share.

    session = ChatSession.from_pretrained("checkpoints/videollamb-tiny-shapes")
    session.load_video("playground/demo/shapes.mp4")
    print(session.ask("What was in the first scene?"))

The video (or image) is encoded once per session, through the towers, SceneTilling and the bridge; every
question after that reuses the projected visual tokens. A reply in which the model wrote the time placeholder is
answered with the time filled in from its evidence (`llava.serve.time_answers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import Tensor
from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from llava.constants import DEFAULT_IMAGE_TOKEN, DEFAULT_VIDEO_TOKEN, TIME_PLACEHOLDER
from llava.conversation import DEFAULT_TEMPLATE, Conversation, get_template
from llava.errors import CheckpointError, LlavaError
from llava.mm_utils import prompt_tensor
from llava.model.builder import DEFAULT_DEVICE, load_pretrained_model
from llava.model.checkpoint import bundled_checkpoint
from llava.serve.evidence import DEFAULT_SCORER, Evidence, VideoSegments, answer_evidence, trace_segments
from llava.serve.time_answers import TIME_EVIDENCE_METHOD, HeldPlaceholder, TimeFill, fill_times
from llava.video.decode import load_image
from llava.video.sampling import FrameSampling, sample_video
from llava.video.transforms import VisualProcessor

if TYPE_CHECKING:
    from llava.model.videollamb import VideoLLaMBForCausalLM
    from llava.video.decode import VideoReader

DEMO_CHECKPOINT = bundled_checkpoint()  # the checkout's checkpoints/ or, installed, the package's share/ folder
DEMO_VIDEO = Path(__file__).resolve().parents[2] / "playground" / "demo" / "shapes.mp4"
SHORT_MAX_NEW_TOKENS = 32  # the default of a caption (streaming) and of a benchmark's answer (a letter, a name)


def checkpoint_or_demo(model_path: str | Path | None) -> str | Path:
    """`model_path`, or the bundled demo model when it is None (a CheckpointError saying how to build it if missing)."""
    if model_path is not None:
        return model_path
    if not DEMO_CHECKPOINT.is_dir():
        raise CheckpointError(
            f"the bundled demo model {DEMO_CHECKPOINT} is missing; build it with `make demo-model` "
            "(or `bash scripts/train_tiny_demo.sh`), or pass --model-path"
        )
    return DEMO_CHECKPOINT


@dataclass
class GenerationSettings:
    max_new_tokens: int = 256  # the default longest answer of a chat (CLI, gradio demo, API)
    temperature: float = 0.0  # 0 = greedy (deterministic)
    top_p: float = 1.0

    def kwargs(self) -> dict:
        sample = self.temperature > 0
        settings: dict[str, Any] = dict(max_new_tokens=self.max_new_tokens, do_sample=sample)
        if sample:
            settings.update(temperature=self.temperature, top_p=self.top_p)
        return settings


class ContextTooLong(LlavaError):
    """A prompt (its text and visual tokens) leaves no room in the model's context for an answer."""

    def __init__(self, prompt_tokens: int, context: int) -> None:
        super().__init__(
            f"the prompt is {prompt_tokens} tokens long (text and visual tokens) but the model's "
            f"context holds {context} tokens, answer included: shorten the conversation"
        )
        self.prompt_tokens, self.context = prompt_tokens, context


def fit_to_context(settings: GenerationSettings, prompt_tokens: int, context: int) -> GenerationSettings:
    """`settings` with max_new_tokens capped to what the context leaves after the prompt, so generation never
    goes past the context; ContextTooLong when the prompt leaves no room for a single token."""
    room = context - prompt_tokens
    if room < 1:
        raise ContextTooLong(prompt_tokens, context)
    return replace(settings, max_new_tokens=min(settings.max_new_tokens, room))


@dataclass
class Prompt:
    """The pending turn's prompt, tokenised."""

    input_ids: Tensor  # (1, L) with a negative id for each media placeholder
    placeholders: int  # media placeholders among the ids
    tokens: int  # what the LLM reads: the text tokens plus the visual tokens spliced in for the placeholders


@dataclass
class Reply:
    """One generated assistant turn and what it cost."""

    text: str
    prompt_tokens: int  # text tokens of the prompt plus the visual tokens spliced in for its placeholders
    completion_tokens: int
    finish_reason: str  # "stop" (end of sequence or stopped on request) or "length" (max_new_tokens reached)
    evidence: list[dict] | None = None  # Evidence.to_dict() of each segment, best first, where a front end asked


class TextPieces(BaseStreamer):
    """A transformers streamer that calls `on_text(piece)` with each new piece of the answer as it is generated.

    The pieces joined equal the answer `ChatSession.reply` returns (decoded, special tokens skipped, stripped).
    Text that may still change is held back until more follows: trailing whitespace, replacement characters
    of an unfinished multi-byte character, and the text of trailing byte-fallback tokens (<0xNN>).
    """

    def __init__(self, tokenizer, on_text: Callable[[str], None]) -> None:
        self.tokenizer, self.on_text = tokenizer, on_text
        self.tokens: list[int] = []
        self.sent = ""
        self.prompt_seen = False

    def put(self, value: Tensor) -> None:
        if not self.prompt_seen:  # generate() hands over the prompt first
            self.prompt_seen = True
            return
        self.tokens.extend(value.reshape(-1).tolist())
        stable = len(self.tokens)
        while stable and self._is_byte(self.tokens[stable - 1]):
            stable -= 1
        text = self._text(self.tokens[:stable])
        while text and (text[-1].isspace() or text[-1] == "\ufffd"):
            text = text[:-1]
        self._send(text)

    def end(self) -> None:
        self._send(self._text(self.tokens).strip())

    def _is_byte(self, token_id: int) -> bool:
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        return isinstance(piece, str) and len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">")

    def _text(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True).lstrip()

    def _send(self, text: str) -> None:
        if len(text) > len(self.sent) and text.startswith(self.sent):
            piece, self.sent = text[len(self.sent) :], text
            self.on_text(piece)


class _StopWhen(StoppingCriteria):
    """Stop generating as soon as `should_stop()` is true (e.g. the client went away)."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        self.should_stop = should_stop

    def __call__(self, input_ids: Tensor, scores, **kwargs) -> Tensor:
        return torch.full((input_ids.shape[0],), self.should_stop(), dtype=torch.bool, device=input_ids.device)


@dataclass
class ChatSession:
    """One video or image, many turns."""

    model: VideoLLaMBForCausalLM
    tokenizer: Any  # a transformers tokenizer
    processor: VisualProcessor
    conv_mode: str = DEFAULT_TEMPLATE
    sampling: FrameSampling = field(default_factory=FrameSampling)  # how a video's frames are chosen
    media: Tensor | None = None  # projected visual tokens (N, h) of the loaded video or image
    media_token: str = DEFAULT_VIDEO_TOKEN
    segments: VideoSegments | None = None  # the loaded video's segments, when its frames' times are known (evidence)
    conversation: Conversation = field(init=False)
    time_fill: TimeFill | None = field(init=False)  # the last answer whose time placeholder was filled

    def __post_init__(self) -> None:
        self.conversation = get_template(self.conv_mode)
        self.time_fill = None

    @classmethod
    def from_pretrained(
        cls,
        model_path: str | Path | None = None,
        device: str = DEFAULT_DEVICE,
        model_base: str | Path | None = None,
        dtype: torch.dtype | None = None,
        load_8bit: bool = False,
        load_4bit: bool = False,
        static_kv_cache: bool = False,
        device_map: str | dict | None = None,
        conv_mode: str | None = None,
        **kwargs,
    ) -> ChatSession:
        """model_path None = the bundled demo model; other keyword arguments go to the session. The session samples
        videos and prompts as the checkpoint's config says (`sampling`, `conv_mode`), unless told otherwise."""
        tokenizer, model, processor, _ = load_pretrained_model(
            checkpoint_or_demo(model_path),
            model_base=model_base,
            device=device,
            dtype=dtype,
            load_8bit=load_8bit,
            load_4bit=load_4bit,
            static_kv_cache=static_kv_cache,
            device_map=device_map,
        )
        kwargs["conv_mode"] = conv_mode or model.config.conv_template
        kwargs.setdefault("sampling", model.config.frame_sampling)
        return cls(model=model, tokenizer=tokenizer, processor=processor, **kwargs)

    def fork(self, **changes) -> ChatSession:
        """A new session on the same model, tokenizer and processor (and media, unless changed), with no turns."""
        return replace(self, **changes)

    @property
    def num_frames(self) -> int:
        """Frames sampled uniformly per video (when `sampling` is uniform)."""
        return self.sampling.num_frames

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _pixels(self, pixels: Tensor) -> Tensor:
        return pixels.to(device=self.device, dtype=next(self.model.parameters()).dtype)

    def load_frames(self, frames: np.ndarray, times: np.ndarray | None = None) -> None:
        """Decoded frames (T, H, W, 3) uint8 -> visual tokens, encoded once; starts a new conversation. With the
        frames' presentation `times` (seconds), answers can carry evidence (`evidence`)."""
        self.load_pixels(self.processor.video(frames), times)

    @torch.inference_mode()
    def load_pixels(self, pixels: Tensor, times: np.ndarray | None = None) -> None:
        """Preprocessed frames (T, 3, S, S) -> visual tokens, encoded once; starts a new conversation. With the
        frames' presentation `times` (seconds) the video's segments are kept for `evidence` (one pass all the
        same: the tokens are those after the last segment)."""
        pixels = self._pixels(pixels)
        self.segments = None
        if times is not None and not self.model.reads_as_images(len(pixels)):
            self.media, self.segments = trace_segments(self.model, pixels, times)
        else:
            (self.media,) = self.model.encode_videos([pixels])
        self.media_token = DEFAULT_VIDEO_TOKEN
        self.reset()

    def load_video(self, source: str | Path | VideoReader) -> None:
        """Sample a video (a path, or a reader already open) as `sampling` says and encode it; frames are brought
        to model size while they are decoded, so a 4K file is never held at full size."""
        pixels, times = sample_video(source, self.sampling, transform=self.processor.video)
        self.load_pixels(cast(Tensor, pixels), times)  # a transform given: a tensor

    @torch.inference_mode()
    def load_image(self, image: str | Path | np.ndarray) -> None:
        """Encode an image: a path, or pixels (H, W, 3) uint8 as `load_image` returns them."""
        pixels = image if isinstance(image, np.ndarray) else load_image(image)
        (self.media,) = self.model.encode_images([self._pixels(self.processor.image(pixels))])
        self.media_token = DEFAULT_IMAGE_TOKEN
        self.segments = None
        self.reset()

    def reset(self) -> None:
        """Forget the turns (and the last time filled in), keep the encoded media."""
        self.conversation = get_template(self.conv_mode)
        self.time_fill = None

    def evidence(self, question: str, answer: str, method: str | None = None) -> list[Evidence]:
        """The time spans of the loaded video's segments that `answer` to `question` rests on, each with a score,
        best first (see `llava.serve.evidence`; `method` None: DEFAULT_SCORER); empty for an image or a video
        loaded without its frames' times. For the last answer whose time this session filled in, the model's reply
        is scored, and with `method` None the evidence is that the time came from."""
        fill = self.time_fill
        if fill is not None and (fill.question, fill.answer) == (question, answer):
            if method is None:
                return list(fill.evidence)
            answer = fill.reply
        if self.segments is None:
            return []
        return answer_evidence(self, self.segments, question, answer, method or DEFAULT_SCORER)

    def fill_time_placeholder(self, reply: str) -> str:
        """The pending turn's reply with its time placeholder filled from the reply's best evidence span (see
        `llava.serve.time_answers`); the fill is kept for `evidence`."""
        messages = self.conversation.messages
        question = messages[-2][1].removeprefix(f"{self.media_token}\n") if len(messages) > 1 else ""
        evidence = self.evidence(question, reply, TIME_EVIDENCE_METHOD)
        self.time_fill = TimeFill(question, reply, fill_times(reply, evidence), evidence)
        return self.time_fill.answer

    def ask(self, question: str, settings: GenerationSettings | None = None) -> str:
        """One turn: the question (see `add_question`) and its answer join the history."""
        self.add_question(question)
        return self.reply(settings).text

    def add_question(self, question: str) -> None:
        """Append a user turn and a pending assistant turn for `reply`; the media tag goes in front of the first
        question."""
        first = not self.conversation.messages
        text = f"{self.media_token}\n{question}" if first and self.media is not None else question
        self.conversation.append_message(self.conversation.roles[0], text)
        self.conversation.append_message(self.conversation.roles[1], None)

    @property
    def context_length(self) -> int:
        """The most tokens the LLM reads and writes in one turn: prompt (visual tokens included) and answer."""
        return self.model.config.text_config.max_position_embeddings

    def prompt(self) -> Prompt:
        """The pending assistant turn's prompt (see `reply`), tokenised; ContextTooLong when it leaves no room
        in the context for an answer."""
        if not self.conversation.messages or self.conversation.messages[-1] != [self.conversation.roles[1], None]:
            raise ValueError("the conversation has no pending assistant turn; append one with text None")
        input_ids = prompt_tensor(self.conversation.get_prompt(), self.tokenizer).to(self.device)  # (1, L)
        placeholders = int((input_ids < 0).sum())
        if not placeholders:
            visual = 0
        elif self.media is None:
            raise LlavaError("the prompt holds a <video> or <image> placeholder but no video or image is loaded")
        else:
            visual = placeholders * int(self.media.shape[0])
        tokens = input_ids.shape[1] - placeholders + visual
        if tokens >= self.context_length:
            raise ContextTooLong(tokens, self.context_length)
        return Prompt(input_ids, placeholders, tokens)

    @torch.no_grad()
    def reply(
        self,
        settings: GenerationSettings | None = None,
        on_text: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        prompt: Prompt | None = None,
    ) -> Reply:
        """Generate the pending assistant turn (the conversation's last message, None); the answer fills it.

        `on_text` receives the answer piece by piece while it is generated (see `TextPieces`); `should_stop`
        is polled after every token and ends generation early when it returns True. `prompt`: the pending turn's
        `prompt()` when the caller has it already. The answer never goes past the model's context: max_new_tokens
        is capped to what the prompt leaves (ContextTooLong when it leaves nothing). A time placeholder in the
        reply is filled in (`fill_time_placeholder`); `on_text` gets the filled text, the placeholder held back.
        """
        prompt = prompt or self.prompt()
        settings = fit_to_context(settings or GenerationSettings(), prompt.tokens, self.context_length)
        extra: dict = {}
        held = HeldPlaceholder(on_text) if on_text is not None else None
        if held is not None:
            extra["streamer"] = TextPieces(self.tokenizer, held)
        if should_stop is not None:
            extra["stopping_criteria"] = StoppingCriteriaList([_StopWhen(should_stop)])
        output = self.model.generate(
            prompt.input_ids,
            visual_features=[self.media] * prompt.placeholders if self.media is not None else [],
            pad_token_id=self.tokenizer.pad_token_id,
            **settings.kwargs(),
            **extra,
        )  # (1, new)
        new = output[0].tolist()
        answer = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        if TIME_PLACEHOLDER in answer:
            answer = self.fill_time_placeholder(answer)
        if held is not None:
            held.finish(answer)
        self.conversation.messages[-1][1] = answer
        ended = bool(new) and new[-1] == self.tokenizer.eos_token_id
        return Reply(
            text=answer,
            prompt_tokens=prompt.tokens,
            completion_tokens=len(new),
            finish_reason="length" if not ended and len(new) >= settings.max_new_tokens else "stop",
        )
