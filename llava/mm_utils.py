"""Tokenise a prompt that holds `<video>` / `<image>` placeholders, optionally with training labels."""

from __future__ import annotations

import re

import torch
from torch import Tensor

from llava.constants import IGNORE_INDEX, MEDIA_TOKEN_INDEX

_PLACEHOLDER = re.compile("(" + "|".join(re.escape(t) for t in MEDIA_TOKEN_INDEX) + ")")


def tokenize_prompt(
    prompt: str, tokenizer, target_spans: list[tuple[int, int]] | None = None
) -> tuple[list[int], list[int] | None]:
    """Token ids of `prompt` with each placeholder as its negative id, and BOS first.

    With `target_spans` (character [start, end) ranges, e.g. the assistant replies from
    `Conversation.render`), also returns labels: the token id where a token overlaps a span, else IGNORE_INDEX.
    """
    ids: list[int] = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    labels: list[int] = [IGNORE_INDEX] * len(ids)
    offset = 0
    for chunk in _PLACEHOLDER.split(prompt):
        if chunk in MEDIA_TOKEN_INDEX:
            ids.append(MEDIA_TOKEN_INDEX[chunk])
            labels.append(IGNORE_INDEX)
        elif chunk:
            encoded = tokenizer(chunk, add_special_tokens=False, return_offsets_mapping=True)
            for token, (start, end) in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True):
                ids.append(token)
                labels.append(token if _overlaps(offset + start, offset + end, target_spans) else IGNORE_INDEX)
        offset += len(chunk)
    return ids, (labels if target_spans is not None else None)


def _overlaps(start: int, end: int, spans: list[tuple[int, int]] | None) -> bool:
    return bool(spans) and any(start < span_end and end > span_start for span_start, span_end in spans)


def prompt_tensor(prompt: str, tokenizer) -> Tensor:
    """(1, L) long tensor of `tokenize_prompt` ids, ready for `model.generate`."""
    return torch.tensor([tokenize_prompt(prompt, tokenizer)[0]], dtype=torch.long)
