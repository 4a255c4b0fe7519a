"""Tokenise a prompt that holds `<video>` / `<image>` placeholders, optionally with training labels.

The text between placeholders is tokenised piece by piece, as the original's `tokenizer_x_token` does with the
slow sentencepiece LlamaTokenizer: that one starts every piece with a word boundary ("▁"), also a piece that
already starts with a space (" then" -> "▁", "▁then"). A fast tokenizer's Metaspace step adds none there, so such
a piece gets the space the original's boundary stands for.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from llava.constants import IGNORE_INDEX, MEDIA_TOKEN_INDEX

_PLACEHOLDER = re.compile("(" + "|".join(re.escape(t) for t in MEDIA_TOKEN_INDEX) + ")")


def tokenize_prompt(
    prompt: str,
    tokenizer,
    target_spans: list[tuple[int, int]] | None = None,
    labels_at: dict[int, int] | None = None,
) -> tuple[list[int], list[int] | None]:
    """Token ids of `prompt` with each placeholder as its negative id, and BOS first.

    With `target_spans` (character [start, end) ranges, e.g. the assistant replies from
    `Conversation.render`), also returns labels: the token id where a token overlaps a span, else IGNORE_INDEX.
    `labels_at` ({character offset: label}) labels the token covering each offset with that label instead
    (auxiliary targets on prompt tokens, see `llava.data.option_judgement`).
    """
    overrides = labels_at or {}
    ids: list[int] = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    labels: list[int] = [IGNORE_INDEX] * len(ids)
    offset = 0
    for chunk in _PLACEHOLDER.split(prompt):
        if chunk in MEDIA_TOKEN_INDEX:
            ids.append(MEDIA_TOKEN_INDEX[chunk])
            labels.append(IGNORE_INDEX)
        elif chunk:
            shift = int(chunk[0] == " " and _boundary_absorbs_space(tokenizer))
            text = " " * shift + chunk
            encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            for token, (start, end) in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True):
                start, end = max(0, start - shift), max(0, end - shift)
                ids.append(token)
                labels.append(token if _overlaps(offset + start, offset + end, target_spans) else IGNORE_INDEX)
                for at, label in overrides.items():
                    if offset + start <= at < offset + end:
                        labels[-1] = label
        offset += len(chunk)
    return ids, (labels if target_spans is not None else None)


def _boundary_absorbs_space(tokenizer) -> bool:
    """Whether the word boundary the tokenizer puts before a text swallows the text's own leading space
    ("a" and " a" give the same ids), where the slow sentencepiece tokenizer keeps both."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    spaced = tokenizer(" a", add_special_tokens=False)["input_ids"]
    return plain == spaced


def _overlaps(start: int, end: int, spans: list[tuple[int, int]] | None) -> bool:
    if not spans:
        return False
    return any(start < span_end and end > span_start for span_start, span_end in spans)


def prompt_tensor(prompt: str, tokenizer) -> Tensor:
    """(1, L) long tensor of `tokenize_prompt` ids, ready for `model.generate`."""
    return torch.tensor([tokenize_prompt(prompt, tokenizer)[0]], dtype=torch.long)
