"""ChatSession: the inference object every front end and the evaluation share.

    session = ChatSession.from_pretrained("checkpoints/videollamb-tiny-shapes")
    session.load_video("playground/demo/shapes.mp4")
    print(session.ask("What was in the first scene?"))

The video (or image) is encoded once per session, through the towers, SceneTilling and the bridge; every
question after that reuses the projected visual tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from llava.constants import DEFAULT_IMAGE_TOKEN, DEFAULT_VIDEO_TOKEN
from llava.conversation import Conversation, get_template
from llava.errors import CheckpointError
from llava.mm_utils import prompt_tensor
from llava.model.builder import load_pretrained_model
from llava.video.decode import load_image, load_video
from llava.video.transforms import VisualProcessor

DEMO_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "videollamb-tiny-shapes"


@dataclass
class GenerationSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy (deterministic)
    top_p: float = 1.0

    def kwargs(self) -> dict:
        sample = self.temperature > 0
        settings = dict(max_new_tokens=self.max_new_tokens, do_sample=sample)
        if sample:
            settings.update(temperature=self.temperature, top_p=self.top_p)
        return settings


@dataclass
class ChatSession:
    """One video or image, many turns."""

    model: torch.nn.Module
    tokenizer: object
    processor: VisualProcessor
    conv_mode: str = "llava_v1"
    num_frames: int = 16
    media: Tensor | None = None  # projected visual tokens (N, h) of the loaded video or image
    media_token: str = DEFAULT_VIDEO_TOKEN
    conversation: Conversation = field(init=False)

    def __post_init__(self) -> None:
        self.conversation = get_template(self.conv_mode)

    @classmethod
    def from_pretrained(
        cls,
        model_path: str | Path | None = None,
        device: str = "auto",
        model_base: str | Path | None = None,
        load_8bit: bool = False,
        load_4bit: bool = False,
        **kwargs,
    ) -> "ChatSession":
        """model_path None = the bundled demo model; other keyword arguments go to the session."""
        if model_path is None and not DEMO_CHECKPOINT.is_dir():
            raise CheckpointError(
                f"the bundled demo model {DEMO_CHECKPOINT} is missing; build it with `make demo-model` "
                "(or `bash scripts/train_tiny_demo.sh`), or pass --model-path"
            )
        tokenizer, model, processor, _ = load_pretrained_model(
            model_path or DEMO_CHECKPOINT, model_base=model_base, device=device,
            load_8bit=load_8bit, load_4bit=load_4bit,
        )
        kwargs.setdefault("num_frames", model.config.num_frames)
        return cls(model=model, tokenizer=tokenizer, processor=processor, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _pixels(self, pixels: Tensor) -> Tensor:
        return pixels.to(device=self.device, dtype=next(self.model.parameters()).dtype)

    @torch.no_grad()
    def load_frames(self, frames: np.ndarray) -> None:
        """Decoded frames (T, H, W, 3) uint8 -> visual tokens, encoded once; starts a new conversation."""
        (self.media,) = self.model.encode_videos([self._pixels(self.processor.video(frames))])
        self.media_token = DEFAULT_VIDEO_TOKEN
        self.conversation = get_template(self.conv_mode)

    def load_video(self, path: str | Path) -> None:
        frames, _ = load_video(path, num_frames=self.num_frames)
        self.load_frames(frames)

    @torch.no_grad()
    def load_image(self, path: str | Path) -> None:
        (self.media,) = self.model.encode_images([self._pixels(self.processor.image(load_image(path)))])
        self.media_token = DEFAULT_IMAGE_TOKEN
        self.conversation = get_template(self.conv_mode)

    def reset(self) -> None:
        """Forget the turns, keep the encoded media."""
        self.conversation = get_template(self.conv_mode)

    @torch.no_grad()
    def ask(self, question: str, settings: GenerationSettings | None = None) -> str:
        """One turn: the media tag goes in front of the first question; the answer joins the history."""
        settings = settings or GenerationSettings()
        first = not self.conversation.messages
        text = f"{self.media_token}\n{question}" if first and self.media is not None else question
        self.conversation.append_message(self.conversation.roles[0], text)
        self.conversation.append_message(self.conversation.roles[1], None)
        input_ids = prompt_tensor(self.conversation.get_prompt(), self.tokenizer).to(self.device)
        visual = [self.media] * int((input_ids < 0).sum())
        output = self.model.generate(
            input_ids, visual_features=visual, pad_token_id=self.tokenizer.pad_token_id, **settings.kwargs()
        )
        answer = self.tokenizer.decode(output[0], skip_special_tokens=True).strip()
        self.conversation.messages[-1][1] = answer
        return answer
