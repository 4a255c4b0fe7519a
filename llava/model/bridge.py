"""The Memory Bridge: a recurrent transformer layer over [memory ; segment tokens] plus a memory retriever.

One explicit state object carries the recurrence, and `MemoryBridge.step(state, tokens)` advances it by one
segment; the full-video forward (`run_segments`) and streams (`llava.model.stream.VideoStream`) both use that one step.

Equations (reference section 2), per segment s with tokens X_s:
    [M~_s ; H~_s] = BridgeLayer([M_{s-1} ; X_s])
    C_s           = concat(M~_1 .. M~_s)        (variant "default")   or concat(H~_1 .. H~_s)   (variant "mem")
    M_s           = LN(M~_s + Dense(CrossAttn(q=M~_s, kv=C_s)))
In the "mem" variant (or any with `segment_position_embeddings`) a learned segment position (`segment_position_emb`,
the release's `abs_vid_pe`) is added to the tokens of video segment s; an image (and the variant's short video, see
`VideoLLaMBForCausalLM`) gets none.
Batches are right-aligned: a video with fewer segments starts later, so every video's last segment is the
last step, and inactive steps leave its state untouched. Module names mirror the released checkpoint
(`selfattention`, `crossattention`, `residual.dense`, `mlp.0`) so that loading is a prefix mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llava.model.activations import Activation
from llava.model.config import BridgeConfig

KEPT_MEMORIES = ("memories", "memories_and_last_segment")  # readouts that keep every segment's memory


class ResidualNorm(nn.Module):
    """Post-LN output block: LN(residual + Dropout(Dense(x)))."""

    def __init__(self, in_features: int, config: BridgeConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.layernorm(residual + self.dropout(self.dense(x)))


class AttentionBlock(nn.Module):
    """Multi-head attention with separate q/k/v projections, followed by the post-LN residual block."""

    def __init__(self, config: BridgeConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.dropout_p = config.attention_probs_dropout_prob
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.residual = ResidualNorm(d, config)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)  # (B, h, n, d/h)

    def forward(self, query: Tensor, kv: Tensor, kv_mask: Tensor) -> Tensor:
        """query (B, Q, d), kv (B, K, d), kv_mask (B, K) bool with True = attend -> (B, Q, d)."""
        q, k, v = self._heads(self.q_proj(query)), self._heads(self.k_proj(kv)), self._heads(self.v_proj(kv))
        mask = kv_mask[:, None, None, :]  # (B, 1, 1, K)
        dropout = self.dropout_p if self.training else 0.0
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        attended = attended.transpose(1, 2).reshape(query.shape)
        return self.residual(attended, query)


class BridgeLayer(nn.Module):
    """BERT-style layer: self-attention block then feed-forward block, both post-LN; no positions."""

    def __init__(self, config: BridgeConfig) -> None:
        super().__init__()
        self.selfattention = AttentionBlock(config)
        self.mlp = nn.Sequential(
            nn.Linear(config.hidden_size, config.intermediate_size), Activation(config.hidden_act, "bridge hidden_act")
        )
        self.residual = ResidualNorm(config.intermediate_size, config)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.selfattention(x, x, mask)
        return self.residual(self.mlp(x), x)


class Retriever(nn.Module):
    """One cross-attention block (no feed-forward): the new memory reads the cache."""

    def __init__(self, config: BridgeConfig) -> None:
        super().__init__()
        self.crossattention = AttentionBlock(config)

    def forward(self, memory: Tensor, cache: Tensor, cache_mask: Tensor) -> Tensor:
        return self.crossattention(memory, cache, cache_mask)


@dataclass
class BridgeState:
    """The recurrence carried across segments, for a batch of B streams.

    memory:       (B, M, d) memory after retrieval, M_s
    cache:        blocks appended one per step, each (B, L, d): M~_s ("default") or H~_s ("mem")
    cache_masks:  one (B, L) bool mask per block (False for padding and for steps a stream sat out)
    num_segments: (B,) segments each stream has consumed
    memories:     "mem" variant only: M_s of every step, (B, M, d) each, with `memory_masks` (B,) per step
    """

    memory: Tensor
    num_segments: Tensor
    cache: list[Tensor] = field(default_factory=list)
    cache_masks: list[Tensor] = field(default_factory=list)
    memories: list[Tensor] = field(default_factory=list)
    memory_masks: list[Tensor] = field(default_factory=list)

    def detach(self) -> BridgeState:
        """A copy cut from the autograd graph (for streaming and for saving)."""
        return BridgeState(
            memory=self.memory.detach(),
            cache=[c.detach() for c in self.cache],
            cache_masks=list(self.cache_masks),
            num_segments=self.num_segments.clone(),
            memories=[m.detach() for m in self.memories],
            memory_masks=list(self.memory_masks),
        )


@dataclass
class BridgeStep:
    """One segment through the bridge (`MemoryBridge.advance`), with what it computed on the way."""

    state: BridgeState  # the state after the segment: its `memory` is M_s, after retrieval
    inputs: Tensor  # (B, N, d) the segment's tokens as the bridge layer read them (with the segment position)
    memory_tilde: Tensor  # (B, M, d) M~_s, the memory leaving the bridge layer, before retrieval
    hidden: Tensor  # (B, N, d) H~_s, the bridged segment tokens


class SegmentPositionEmbedding(nn.Embedding):
    """The learned position of each video segment, added to its tokens; zero at first (the release's `abs_vid_pe`
    is zero-initialised), so a model given it reads videos as before until it is trained, also when a checkpoint
    without it is loaded with it switched on (`VideoLLaMBPreTrainedModel._init_weights` keeps it zero)."""

    def __init__(self, num_positions: int, hidden_size: int) -> None:
        super().__init__(num_positions, hidden_size)
        nn.init.zeros_(self.weight)


class MemoryBridge(nn.Module):
    """Bridge layer + retriever with an explicit, batched recurrent state.

    `reset_memory_each_segment` is a run-time switch (never saved with the model): the ablation that starts every
    segment from the initial memory and an empty cache, to show what the memory carries.
    """

    def __init__(self, config: BridgeConfig) -> None:
        super().__init__()
        self.config = config
        self.reset_memory_each_segment = False
        self.read_memory_emb = nn.Parameter(torch.zeros(config.num_memory_tokens, config.hidden_size))
        if config.memory_init_std > 0:
            nn.init.normal_(self.read_memory_emb, std=config.memory_init_std)
        self.layer = BridgeLayer(config)
        self.retriever = Retriever(config)
        self.segment_position_emb = None
        if config.has_segment_positions:
            self.segment_position_emb = SegmentPositionEmbedding(config.max_segment_positions, config.hidden_size)

    def init_state(self, batch_size: int) -> BridgeState:
        memory = self.read_memory_emb[None].expand(batch_size, -1, -1)
        counts = torch.zeros(batch_size, dtype=torch.long, device=memory.device)
        return BridgeState(memory=memory, num_segments=counts)

    def step(
        self,
        state: BridgeState,
        tokens: Tensor,
        token_mask: Tensor | None = None,
        active: Tensor | None = None,
        cache_cap: int | None = None,
        segment_positions: bool = True,
    ) -> tuple[BridgeState, Tensor]:
        """Advance every stream by one segment: `advance`, returning the new state and the bridged tokens H~."""
        taken = self.advance(state, tokens, token_mask, active, cache_cap, segment_positions)
        return taken.state, taken.hidden

    def advance(
        self,
        state: BridgeState,
        tokens: Tensor,
        token_mask: Tensor | None = None,
        active: Tensor | None = None,
        cache_cap: int | None = None,
        segment_positions: bool = True,
    ) -> BridgeStep:
        """Advance every stream by one segment, keeping what the step computed on the way.

        tokens (B, N, d) with token_mask (B, N) (True = real token); active (B,) bool, False leaves that
        stream's state as it was; `cache_cap` keeps at most that many cache blocks (default: the config's
        max_cache_segments); `segment_positions` False: no segment position is added (images).
        """
        b, n, _ = tokens.shape
        token_mask = tokens.new_ones(b, n, dtype=torch.bool) if token_mask is None else token_mask
        active = tokens.new_ones(b, dtype=torch.bool) if active is None else active
        cfg = self.config
        if self.segment_position_emb is not None and segment_positions:
            positions = state.num_segments.clamp(max=cfg.max_segment_positions - 1)
            tokens = tokens + self.segment_position_emb(positions)[:, None, :]
        previous, cache, cache_masks = state.memory, state.cache, state.cache_masks
        if self.reset_memory_each_segment:
            previous, cache, cache_masks = self.init_state(b).memory, [], []
        m = previous.shape[1]
        x = torch.cat([previous, tokens], dim=1)  # (B, M + N, d)
        x_mask = torch.cat([token_mask.new_ones(b, m), token_mask], dim=1)
        y = self.layer(x, x_mask)
        memory_tilde, hidden = y[:, :m], y[:, m:]  # (B, M, d), (B, N, d)
        block, block_mask = (hidden, token_mask) if cfg.variant == "mem" else (memory_tilde, x_mask[:, :m])
        # the current block is always attendable, so a stream sitting out this step still has a valid row
        kv = torch.cat([*cache, block], dim=1)
        kv_mask = torch.cat([*cache_masks, block_mask], dim=1)
        retrieved = self.retriever(memory_tilde, kv, kv_mask)
        cap = cfg.max_cache_segments if cache_cap is None else cache_cap
        new_state = self._advance(
            state, cache, cache_masks, block, block_mask & active[:, None], retrieved, active, cap
        )
        return BridgeStep(state=new_state, inputs=tokens, memory_tilde=memory_tilde, hidden=hidden)

    def _advance(
        self,
        state: BridgeState,
        cache: list[Tensor],
        cache_masks: list[Tensor],
        block: Tensor,
        block_mask: Tensor,
        retrieved: Tensor,
        active: Tensor,
        cap: int | None,
    ) -> BridgeState:
        cache, cache_masks = [*cache, block], [*cache_masks, block_mask]
        if cap is not None and len(cache) > cap:
            cache, cache_masks = cache[-cap:], cache_masks[-cap:]
        memory = torch.where(active[:, None, None], retrieved, state.memory)
        memories, memory_masks = state.memories, state.memory_masks
        if self.config.readout_mode in KEPT_MEMORIES:
            memories, memory_masks = [*memories, retrieved], [*memory_masks, active]
        return BridgeState(
            memory=memory,
            cache=cache,
            cache_masks=cache_masks,
            num_segments=state.num_segments + active.long(),
            memories=memories,
            memory_masks=memory_masks,
        )

    def run_segments(
        self, segments: list[list[Tensor]], every_segment: bool = False, segment_positions: bool = True
    ) -> tuple[BridgeState, list[Tensor] | list[list[Tensor]]]:
        """Run whole videos: segments[i] is video i's list of (N_ij, d) segment tokens.

        Right-aligned batching: video i joins at step S_max - S_i. Returns the final state and, per video,
        the tokens the language model reads after its last segment (`readout`).
        With `every_segment`, returns per video the list of what the LLM would read after each of its
        segments (for the loss at every recurrent iteration). `segment_positions` False: images (see `advance`).
        """
        counts = [len(s) for s in segments]
        if min(counts) < 1:
            raise ValueError("every video needs at least one segment")
        steps = max(counts)
        ref = segments[0][0]
        state = self.init_state(len(segments))
        readouts: list[list[Tensor]] = [[] for _ in segments]
        for step in range(steps):
            chunk = [s[step - (steps - len(s))] if step >= steps - len(s) else None for s in segments]
            tokens, mask, active = _pad_segments(chunk, ref)
            state, hidden = self.step(state, tokens, mask, active, segment_positions=segment_positions)
            for i, c in enumerate(chunk):
                if c is not None and (every_segment or step == steps - 1):
                    readouts[i].append(self.readout(state, hidden, i, c.shape[0]))
        if every_segment:
            return state, readouts
        return state, [r[-1] for r in readouts]

    def readout(self, state: BridgeState, hidden: Tensor, index: int, length: int) -> Tensor:
        """What the LLM reads for stream `index` after a step whose bridged segment is hidden[index, :length]."""
        mode = self.config.readout_mode
        if mode == "memories":
            return _stream_memories(state, index)
        if mode == "memory_and_last_segment":
            return torch.cat([state.memory[index], hidden[index, :length]])
        if mode == "memories_and_last_segment":
            return torch.cat([_stream_memories(state, index), hidden[index, :length]])
        return hidden[index, :length]


def _pad_segments(chunk: list[Tensor | None], ref: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Stack one step's segments (None = stream not started yet) into (B, N, d) with masks."""
    lengths = [0 if c is None else c.shape[0] for c in chunk]
    width = max(max(lengths), 1)
    tokens = ref.new_zeros(len(chunk), width, ref.shape[-1])
    mask = torch.zeros(len(chunk), width, dtype=torch.bool, device=ref.device)
    for i, c in enumerate(chunk):
        if c is not None:
            tokens[i, : c.shape[0]] = c
            mask[i, : c.shape[0]] = True
        else:
            mask[i, 0] = True  # one dummy key keeps attention finite; the result is discarded
    active = torch.tensor([c is not None for c in chunk], device=ref.device)
    return tokens, mask, active


def _stream_memories(state: BridgeState, index: int) -> Tensor:
    """[M_1; ...; M_S] of one stream: the memories of the steps it took part in, (S * M, d)."""
    kept = [m[index] for m, on in zip(state.memories, state.memory_masks, strict=True) if bool(on[index])]
    return torch.cat(kept, dim=0)
