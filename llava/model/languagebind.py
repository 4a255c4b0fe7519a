"""LanguageBind vision towers: a CLIP ViT, with divided temporal attention in the video tower.

Module names match the published LanguageBind checkpoints under `vision_model.`
(`LanguageBind/LanguageBind_Image`, `LanguageBind/LanguageBind_Video_merge`), so their vision weights, or a
transformers `CLIPVisionModel` state dict with `vision_model.` prepended (or loaded into `tower.vision_model`
directly), load without renaming. The video tower adds, in every encoder layer, `temporal_embedding`,
`temporal_layer_norm1` and `temporal_attn`, which mix the frames of a window of `temporal_window`
consecutive frames of ONE video at each token position (reference section 1a).

Unlike the release, whose windows are cut along the flattened frame axis of the whole batch (so a frame count
that is not a multiple of the window mixes videos), each video here is padded up to a multiple of the window
and the padded frames are masked out as keys of the temporal attention; their outputs are dropped. Padded
frames never run through the spatial blocks.

Initialisation (only relevant without a checkpoint): normal(std=initializer_range) for linear, conv and
embedding weights, the class embedding and the temporal embedding; zeros for biases; ones/zeros for
layernorms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llava.errors import ConfigError
from llava.model.activations import activation
from llava.model.config import VisionTowerConfig


class TowerAttention(nn.Module):
    """CLIP multi-head attention (separate q/k/v/out projections with bias), used spatially and temporally."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ConfigError(f"vision hidden_size {hidden_size} is not a multiple of num_attention_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scale = self.head_dim**-0.5
        self.dropout = dropout
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor, key_mask: Tensor | None = None, causal: bool = False) -> Tensor:
        """x: (B, L, D); key_mask: (B, L) bool, True = the key takes part (every row needs one); `causal`
        lets position i attend only to positions <= i. -> (B, L, D)."""
        q, k, v = self._heads(x)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, L)
        if causal:
            length = x.shape[1]
            lower = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()  # (L, L)
            mask = lower if mask is None else mask & lower
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, scale=self.scale
        )  # (B, H, L, hd)
        return self._merge(out)

    def extend(self, x: Tensor, past: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x: (B, n, D), the n positions that follow those whose keys and values `past` holds ((B, H, P, hd)
        each, or None for none) -> causal attention of x over past and itself (B, n, D), and the keys and values
        of all P + n positions. The same as `forward(causal=True)` on the P + n positions, for the last n."""
        q, k, v = self._heads(x)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        new, total = x.shape[1], k.shape[2]
        mask = torch.ones(new, total, dtype=torch.bool, device=x.device).tril(diagonal=total - new)  # (n, P + n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return self._merge(out), (k, v)

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: (B, L, D) -> queries, keys and values (B, H, L, hd)."""
        batch, length, _ = x.shape
        return tuple(
            proj(x).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )

    def _merge(self, out: Tensor) -> Tensor:
        """out: (B, H, L, hd) -> (B, L, D) through the output projection."""
        batch, _, length, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim))


class TowerMLP(nn.Module):
    """fc1 -> the config's activation (quick_gelu in LanguageBind) -> fc2."""

    def __init__(self, config: VisionTowerConfig) -> None:
        super().__init__()
        self.act = activation(config.hidden_act, "vision tower hidden_act")
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


@dataclass(frozen=True)
class WindowPlan:
    """Where each real frame sits in the padded window layout of a batch of videos.

    slot_index: (F,) slot of each real frame among num_windows * window slots, or None when no video needs
    padding (then slots are the frames themselves); key_mask: (num_windows, window) bool, True = real frame.
    """

    num_windows: int
    window: int
    slot_index: Tensor | None
    key_mask: Tensor | None


def plan_windows(lengths: list[int], window: int, device: torch.device) -> WindowPlan:
    """Cut each video of `lengths` frames into windows of `window` frames, padding its last window."""
    padded = [-(-t // window) * window for t in lengths]
    num_windows = sum(padded) // window
    if padded == list(lengths):
        return WindowPlan(num_windows, window, None, None)
    slots: list[int] = []
    start = 0
    for length, padded_length in zip(lengths, padded, strict=True):
        slots.extend(range(start, start + length))
        start += padded_length
    slot_index = torch.tensor(slots, dtype=torch.long, device=device)  # (F,)
    key_mask = torch.zeros(num_windows * window, dtype=torch.bool, device=device)
    key_mask[slot_index] = True
    return WindowPlan(num_windows, window, slot_index, key_mask.view(num_windows, window))


@dataclass
class StreamCache:
    """The temporal attention's keys and values of the earlier frames of the current window, one pair of
    (S, H, n, hd) tensors per layer, and the next frame's position in the window."""

    past: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    position: int = 0


class TowerEncoderLayer(nn.Module):
    """One CLIP encoder layer; with `temporal`, preceded by LanguageBind's temporal attention block."""

    def __init__(self, config: VisionTowerConfig, temporal: bool) -> None:
        super().__init__()
        dim = config.hidden_size
        self.self_attn = TowerAttention(dim, config.num_attention_heads, config.attention_dropout)
        self.layer_norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = TowerMLP(config)
        self.layer_norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.temporal = temporal
        self.temporal_causal = config.temporal_causal
        if temporal:
            self.temporal_embedding = nn.Parameter(torch.zeros(1, config.temporal_window, dim))
            self.temporal_layer_norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
            self.temporal_attn = TowerAttention(dim, config.num_attention_heads, config.attention_dropout)

    def spatial_block(self, x: Tensor) -> Tensor:
        """x: (N, S, D) frames -> (N, S, D): the usual CLIP pre-LN self-attention and MLP blocks."""
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))

    def temporal_block(self, x: Tensor, plan: WindowPlan) -> Tensor:
        """x: (F, S, D) real frames -> (F, S, D), each token attending to its position in the other frames
        of its window (padded frames masked as keys)."""
        frames, seq, dim = x.shape
        groups, window = plan.num_windows, plan.window
        if plan.slot_index is not None:
            x = x.new_zeros(groups * window, seq, dim).index_copy(0, plan.slot_index, x)  # (G*W, S, D)
        x = x.view(groups, window, seq, dim).transpose(1, 2).reshape(groups * seq, window, dim)  # (G*S, W, D)
        x = x + self.temporal_embedding[:, :window]
        mask = None
        if plan.key_mask is not None:
            mask = plan.key_mask[:, None, :].expand(groups, seq, window).reshape(groups * seq, window)
        x = x + self.temporal_attn(self.temporal_layer_norm1(x), key_mask=mask, causal=self.temporal_causal)
        x = x.view(groups, seq, window, dim).transpose(1, 2).reshape(groups * window, seq, dim)  # (G*W, S, D)
        if plan.slot_index is not None:
            x = x.index_select(0, plan.slot_index)  # (F, S, D)
        return x


class TowerEmbeddings(nn.Module):
    """CLIP vision embeddings: CLS + conv patches (no bias) + learned absolute positions."""

    def __init__(self, config: VisionTowerConfig) -> None:
        super().__init__()
        dim = config.hidden_size
        self.class_embedding = nn.Parameter(torch.zeros(dim))
        self.patch_embedding = nn.Conv2d(
            config.num_channels, dim, kernel_size=config.patch_size, stride=config.patch_size, bias=False
        )
        self.position_embedding = nn.Embedding(config.grid_size**2 + 1, dim)

    def forward(self, pixel_values: Tensor) -> Tensor:
        """pixel_values: (N, C, H, W) -> (N, 1 + P, D)."""
        weight = self.patch_embedding.weight
        patches = self.patch_embedding(pixel_values.to(dtype=weight.dtype))  # (N, D, g, g)
        patches = patches.flatten(2).transpose(1, 2)  # (N, P, D)
        cls = self.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)  # (N, 1, D)
        return torch.cat([cls, patches], dim=1) + self.position_embedding.weight  # (N, 1 + P, D)


class TowerEncoder(nn.Module):
    """Holds the encoder layers (`encoder.layers.N` in the checkpoint)."""

    def __init__(self, config: VisionTowerConfig, temporal: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TowerEncoderLayer(config, temporal) for _ in range(config.num_hidden_layers))


class VisionTransformer(nn.Module):
    """The `vision_model` of a LanguageBind tower; its state-dict names are those of CLIP's vision model."""

    def __init__(self, config: VisionTowerConfig, temporal: bool) -> None:
        super().__init__()
        self.embeddings = TowerEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.encoder = TowerEncoder(config, temporal)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def embed(self, pixel_values: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, 1 + P, D): hidden state 0 (embeddings after pre_layrnorm)."""
        return self.pre_layrnorm(self.embeddings(pixel_values))


class LanguageBindTower(nn.Module):
    """LanguageBind_Image (`temporal=False`) or LanguageBind_Video_merge (`temporal=True`) vision tower.

    Outputs are hidden state `config.select_layer` (default -2: the output of the second-to-last encoder
    layer, before post_layernorm), all 1 + P tokens; only the layers needed for it are run.
    """

    def __init__(self, config: VisionTowerConfig, temporal: bool) -> None:
        super().__init__()
        self.config = config
        self.temporal = temporal
        self.num_layers_run = config.num_layers_needed
        self.vision_model = VisionTransformer(config, temporal)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, TowerEmbeddings):
            nn.init.normal_(module.class_embedding, std=std)
        elif isinstance(module, TowerEncoderLayer) and module.temporal:
            nn.init.normal_(module.temporal_embedding, std=std)

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_model.embeddings.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.vision_model.embeddings.patch_embedding.weight.device

    def _check_frames(self, pixel_values: Tensor, what: str) -> None:
        c, size = self.config.num_channels, self.config.image_size
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (c, size, size):
            raise ValueError(f"{what} must have shape (N, {c}, {size}, {size}), got {tuple(pixel_values.shape)}")

    def _layers_run(self) -> list[TowerEncoderLayer]:
        """The encoder layers up to `select_layer` (the ones whose output is used)."""
        return cast(list[TowerEncoderLayer], list(self.vision_model.encoder.layers[: self.num_layers_run]))

    def _run_layers(self, x: Tensor, plan: WindowPlan | None) -> Tensor:
        """x: (F, S, D) hidden state 0 -> (F, S, D) hidden state `select_layer`."""
        for layer in self._layers_run():
            if plan is not None:
                x = layer.temporal_block(x, plan)
            x = layer.spatial_block(x)
        return x

    def encode_images(self, pixel_values: Tensor) -> Tensor:
        """pixel_values: (N, C, H, W) -> (N, 1 + P, D).

        The video tower treats each image as a one-frame video (it attends temporally only to itself)."""
        self._check_frames(pixel_values, "pixel_values")
        if self.temporal:
            return torch.cat(self.encode_videos(list(pixel_values.unsqueeze(1))))
        return self._run_layers(self.vision_model.embed(pixel_values.to(self.device)), None)

    def encode_videos(self, videos: list[Tensor]) -> list[Tensor]:
        """videos: list of (T_i, C, H, W) -> list of (T_i, 1 + P, D), all videos batched in one pass.

        In the video tower, temporal windows never mix videos; the image tower encodes frames independently."""
        if not videos:
            return []
        for index, video in enumerate(videos):
            self._check_frames(video, f"video {index}")
        lengths = [int(video.shape[0]) for video in videos]
        frames = torch.cat([video.to(self.device) for video in videos])  # (F, C, H, W)
        x = self.vision_model.embed(frames)  # (F, S, D)
        plan = None
        if self.temporal and x.shape[0] > 0:
            plan = plan_windows(lengths, self.config.temporal_window, x.device)
        return list(self._run_layers(x, plan).split(lengths))

    def encode_stream_frame(self, pixels: Tensor, cache: StreamCache | None = None) -> tuple[Tensor, StreamCache]:
        """One frame of a stream (3, H, W) -> its features (1 + P, D); see `encode_stream_frames`."""
        features, cache = self.encode_stream_frames(pixels[None], cache)
        return features[0], cache

    def encode_stream_frames(self, pixels: Tensor, cache: StreamCache | None = None) -> tuple[Tensor, StreamCache]:
        """The next frames of a stream (N, 3, H, W), in order -> their features (N, 1 + P, D), each frame
        encoded exactly once, and the cache to pass with the frames that follow.

        Windows are consecutive `temporal_window` frames of the stream. A frame attends temporally to the
        earlier frames of its window, whose per-layer keys and values the cache keeps, so however a stream is split into
        calls the features are the same: for a `temporal_causal` tower they equal `encode_videos` on the whole
        stream; a bidirectional tower sees only the past here. The frames of one window that arrive in one call
        go through the tower together (one batch), which is where several frames per call save time.
        """
        self._check_frames(pixels, "frames")
        window = self.config.temporal_window
        cache = cache or StreamCache()
        hidden = self.vision_model.embed(pixels.to(self.device))  # (N, S, D)
        outputs = []
        start = 0
        while start < hidden.shape[0]:
            if cache.position >= window:
                cache = StreamCache()
            left = hidden.shape[0] - start
            # a window already begun, or the last frames, alone; whole windows from their first frame together
            windows, count = (
                (left // window, window)
                if cache.position == 0 and left >= window
                else (1, min(window - cache.position, left))
            )
            x, past = self._stream_windows(hidden[start : start + windows * count], windows, cache)
            outputs.append(x)
            cache = StreamCache(past=past, position=cache.position + count)
            start += windows * count
        return torch.cat(outputs), cache

    def _stream_windows(
        self, x: Tensor, windows: int, cache: StreamCache
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """x: (windows * n, S, D): the next n frames of `windows` consecutive windows, the first continuing
        `cache` (only one window may) -> their features and the temporal keys and values of the last window."""
        count, seq, dim = x.shape[0] // windows, x.shape[1], x.shape[2]
        position = cache.position
        past: list[tuple[Tensor, Tensor]] = []
        for index, layer in enumerate(self._layers_run()):
            if self.temporal:
                x = x.view(windows, count, seq, dim) + layer.temporal_embedding[0, position : position + count, None]
                normed = layer.temporal_layer_norm1(x).transpose(1, 2).reshape(windows * seq, count, dim)
                attended, (keys, values) = layer.temporal_attn.extend(normed, cache.past[index] if cache.past else None)
                x = (x + attended.view(windows, seq, count, dim).transpose(1, 2)).reshape(windows * count, seq, dim)
                past.append((keys[-seq:], values[-seq:]))  # (S, H, k, hd) each: the last window's
            x = layer.spatial_block(x)
        return x, past

    def forward(self, pixel_values: Tensor) -> Tensor:
        """Same as `encode_images`."""
        return self.encode_images(pixel_values)
