"""Splice visual tokens into text embeddings at the placeholder ids (-200 image, -201 video)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX, VIDEO_TOKEN_INDEX

PLACEHOLDER_IDS = (IMAGE_TOKEN_INDEX, VIDEO_TOKEN_INDEX)


@dataclass
class SplicedInputs:
    inputs_embeds: Tensor  # (B, L', h)
    attention_mask: Tensor  # (B, L') long
    labels: Tensor | None  # (B, L') with IGNORE_INDEX on visual tokens and padding
    position_ids: Tensor  # (B, L') positions counted over real tokens only


def placeholder_kinds(input_ids: Tensor, attention_mask: Tensor | None = None) -> list[int]:
    """The placeholder ids in reading order (row by row), e.g. [-201, -200]."""
    keep = torch.isin(input_ids, torch.tensor(PLACEHOLDER_IDS, device=input_ids.device))
    if attention_mask is not None:
        keep &= attention_mask.bool()
    return input_ids[keep].tolist()


def splice_visual_tokens(
    embed_tokens: torch.nn.Module,
    input_ids: Tensor,
    visual: list[Tensor],
    attention_mask: Tensor | None = None,
    labels: Tensor | None = None,
    padding_side: str = "right",
    shared_prefix: int = 0,
) -> SplicedInputs:
    """Replace each placeholder (in reading order) by the next entry of `visual` ((n_i, h) each).

    Padding (attention_mask == 0) is dropped first and added back on `padding_side`, so the result is
    correct whichever side the tokenizer padded. Left padding goes after the first `shared_prefix` tokens of
    every row: a prefix that all rows share stays at the same place (where a KV cache of it fits).
    """
    if shared_prefix and padding_side != "left":
        raise ValueError("a shared prefix needs left padding")
    attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    if len(placeholder_kinds(input_ids, attention_mask)) != len(visual):
        raise ValueError(
            f"the prompts hold {len(placeholder_kinds(input_ids, attention_mask))} media placeholders "
            f"but {len(visual)} encoded media were given"
        )
    queue = iter(visual)
    rows_embeds, rows_labels = [], []
    for b in range(input_ids.shape[0]):
        ids = input_ids[b][attention_mask[b].bool()]
        row_labels = None if labels is None else labels[b][attention_mask[b].bool()]
        embeds, labs = _splice_row(embed_tokens, ids, row_labels, queue)
        rows_embeds.append(embeds)
        rows_labels.append(labs)
    return _pad_rows(rows_embeds, rows_labels if labels is not None else None, padding_side, shared_prefix)


def _splice_row(embed_tokens, ids: Tensor, labels: Tensor | None, queue) -> tuple[Tensor, Tensor | None]:
    is_media = torch.isin(ids, torch.tensor(PLACEHOLDER_IDS, device=ids.device))
    cut_points = torch.nonzero(is_media).flatten().tolist()
    text_embeds = embed_tokens(ids.clamp(min=0))  # placeholders are embedded as id 0 and then replaced
    pieces, label_pieces, start = [], [], 0
    for pos in cut_points:
        media = next(queue).to(text_embeds.dtype)
        pieces += [text_embeds[start:pos], media]
        if labels is not None:
            ignore = labels.new_full((media.shape[0],), IGNORE_INDEX)
            label_pieces += [labels[start:pos], ignore]
        start = pos + 1
    pieces.append(text_embeds[start:])
    if labels is not None:
        label_pieces.append(labels[start:])
    return torch.cat(pieces, dim=0), (torch.cat(label_pieces) if labels is not None else None)


def _pad_rows(
    embeds: list[Tensor], labels: list[Tensor | None] | None, side: str, keep_front: int = 0
) -> SplicedInputs:
    width = max(e.shape[0] for e in embeds)
    b, h = len(embeds), embeds[0].shape[-1]
    out = embeds[0].new_zeros(b, width, h)
    mask = torch.zeros(b, width, dtype=torch.long, device=out.device)
    out_labels = None if labels is None else torch.full((b, width), IGNORE_INDEX, device=out.device)
    positions = torch.zeros(b, width, dtype=torch.long, device=out.device)
    for i, e in enumerate(embeds):
        n = e.shape[0]
        span = torch.arange(n, device=out.device)  # where the row's tokens go: right padding after them all
        if side == "left":  # left padding after the first keep_front of them
            span[keep_front:] += width - n
        out[i, span] = e
        mask[i, span] = 1
        positions[i, span] = torch.arange(n, device=out.device)
        row_labels = None if labels is None else labels[i]
        if out_labels is not None and row_labels is not None:
            out_labels[i, span] = row_labels
    return SplicedInputs(out, mask, out_labels, positions)
