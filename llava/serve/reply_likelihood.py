"""How likely the model finds each candidate reply to a question about the loaded media (EgoPlan's official
protocol ranks the options so; answer evidence compares a reply's likelihood with and without each segment)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from llava.constants import IGNORE_INDEX
from llava.conversation import get_template
from llava.errors import LlavaError
from llava.mm_utils import tokenize_prompt


@dataclass(frozen=True)
class OptionScore:
    loss: float  # mean token cross-entropy of the option's text as the reply (inf when it has no tokens)
    greedy: bool  # greedy decoding would write exactly the option's tokens


@torch.no_grad()
def option_scores(session, question: str, options: Sequence[str]) -> list[OptionScore]:
    """Each option's text scored as the assistant's first reply to `question` about the media loaded in `session`
    (a `ChatSession`); the lowest loss is the model's choice. Only the option's own tokens are scored (not the stop
    string); the session's conversation is left untouched."""
    if session.media is None:
        raise LlavaError("load a video or an image before scoring options")
    scores = []
    for option in options:
        conversation = get_template(session.conv_mode)
        conversation.append_message(conversation.roles[0], f"{session.media_token}\n{question}")
        conversation.append_message(conversation.roles[1], option)
        prompt, spans = conversation.render()
        stop = len(conversation.sep2)
        ids, labels = tokenize_prompt(prompt, session.tokenizer, [(a, b - stop) for a, b in spans])
        input_ids = torch.tensor([ids], device=session.device)
        targets = torch.tensor([labels], device=session.device)
        visual = [session.media] * int((input_ids < 0).sum())
        out = session.model(input_ids=input_ids, labels=targets, visual_features=visual)
        loss = float(out.loss)
        # The reply follows the media, so its tokens sit as far from the end of the LLM's sequence (visual tokens
        # spliced in) as from the end of the ids; the logits at the position before each token predict it.
        scored = (targets[0] != IGNORE_INDEX).nonzero().squeeze(1)
        shift = out.logits.shape[1] - input_ids.shape[1]
        predicted = out.logits[0, scored + shift - 1].argmax(-1)
        greedy = bool(scored.numel()) and bool((predicted == targets[0, scored]).all())
        scores.append(OptionScore(float("inf") if math.isnan(loss) else loss, greedy))  # NaN: no option tokens
    return scores


def option_losses(session, question: str, options: Sequence[str]) -> list[float]:
    """The mean token cross-entropy of each option as the reply (`option_scores`); the lowest is the choice."""
    return [score.loss for score in option_scores(session, question, options)]
