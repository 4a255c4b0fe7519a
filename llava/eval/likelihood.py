"""EgoPlan's official protocol: rank the options by how likely the model finds each one as its reply."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from llava.conversation import get_template
from llava.errors import LlavaError
from llava.mm_utils import tokenize_prompt


@torch.no_grad()
def option_losses(session, question: str, options: Sequence[str]) -> list[float]:
    """Mean token cross-entropy of each option's text as the assistant's first reply to `question` about the
    media loaded in `session` (a `ChatSession`); the lowest is the model's choice. Only the option's own
    tokens are scored (not the stop string); the session's conversation is left untouched."""
    if session.media is None:
        raise LlavaError("load a video or an image before scoring options")
    losses = []
    for option in options:
        conversation = get_template(session.conv_mode)
        conversation.append_message(conversation.roles[0], f"{session.media_token}\n{question}")
        conversation.append_message(conversation.roles[1], option)
        prompt, spans = conversation.render()
        stop = len(conversation.sep2)
        ids, labels = tokenize_prompt(prompt, session.tokenizer, [(a, b - stop) for a, b in spans])
        input_ids = torch.tensor([ids], device=session.device)
        visual = [session.media] * int((input_ids < 0).sum())
        out = session.model(
            input_ids=input_ids, labels=torch.tensor([labels], device=session.device), visual_features=visual
        )
        loss = float(out.loss)
        losses.append(float("inf") if math.isnan(loss) else loss)  # NaN: no option tokens (empty text), never chosen
    return losses
