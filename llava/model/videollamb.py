"""VideoLLaMBForCausalLM: LanguageBind towers -> SceneTilling -> Memory Bridge -> projector -> causal LM.

A composition: the towers, the bridge, the projector and a transformers causal LM (built from
`config.text_config`) are sub-modules. Media enter as lists of preprocessed pixel tensors, one per
placeholder in reading order: `videos[i]` is (T_i, 3, H, W), `images[i]` is (3, H, W). The video steps are
those of `llava.model.stream`: whole videos (`encode_videos`) and live streams (`open_stream`) share them.
`trace_video` returns every intermediate of one video (the parity tests compare them with the original's).
`attach_frame_token_cache` lets training with a frozen video tower run it once per video (`llava.model.frame_cache`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from llava.constants import IMAGE_TOKEN_INDEX, VIDEO_TOKEN_INDEX
from llava.errors import ConfigError
from llava.model.activations import Activation
from llava.model.bridge import BridgeStep, MemoryBridge, SegmentPositionEmbedding
from llava.model.config import VideoLLaMBConfig
from llava.model.frame_cache import FrameTokenCache
from llava.model.languagebind import LanguageBindTower, TowerEmbeddings, TowerEncoderLayer
from llava.model.splice import placeholder_kinds, splice_visual_tokens
from llava.model.stream import (
    FrameTokens,
    StreamSettings,
    VideoStream,
    offline_boundaries,
    offline_segments,
    pool_frames,
    segment_tokens,
)
from llava.video.scenetilling import segments_from_boundaries, subsample_segment


@dataclass
class PromptPrefix:
    """The LLM's KV cache of the text that starts every prompt of a kind (the system prompt, the user role), so
    that generation goes on from it instead of reading that text again."""

    ids: Tensor  # (P,) token ids
    cache: DynamicCache


@dataclass
class VideoTrace:
    """One whole video through the model, step by step (`VideoLLaMBForCausalLM.trace_video`)."""

    tower_hidden: Tensor  # (T, 1+P, D): the video tower's hidden states at `select_layer`, CLS first
    boundaries: list[int]  # SceneTilling's cuts: the last frame of each segment
    segment_frames: list[list[int]]  # the frames each segment feeds the bridge (at most frames_per_segment)
    steps: list[BridgeStep]  # each segment through the bridge (batch of one)
    projected: list[Tensor]  # (N_s, h): the LLM's visual tokens after each segment; the last is what it reads


class VideoLLaMBPreTrainedModel(PreTrainedModel):
    config_class = VideoLLaMBConfig
    config: VideoLLaMBConfig
    base_model_prefix = ""
    input_modalities = ["image", "video", "text"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["LlamaDecoderLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.bridge_config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, SegmentPositionEmbedding):
            init.zeros_(module.weight)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, MemoryBridge):
            if module.config.memory_init_std > 0:
                init.normal_(module.read_memory_emb, mean=0.0, std=module.config.memory_init_std)
            else:
                init.zeros_(module.read_memory_emb)
        elif isinstance(module, TowerEmbeddings):
            init.normal_(module.class_embedding, mean=0.0, std=std)
        elif isinstance(module, TowerEncoderLayer) and module.temporal:
            init.normal_(module.temporal_embedding, mean=0.0, std=std)


class VideoLLaMBForCausalLM(VideoLLaMBPreTrainedModel, GenerationMixin):
    def __init__(self, config: VideoLLaMBConfig) -> None:
        super().__init__(config)
        if config.bridge_config.hidden_size != config.vision_config.hidden_size:
            raise ValueError("bridge hidden_size must equal the vision tower's hidden_size")
        self.video_tower = LanguageBindTower(config.vision_config, temporal=True)
        self.image_tower = LanguageBindTower(config.vision_config, temporal=False) if config.use_image_tower else None
        self.bridge = MemoryBridge(config.bridge_config)
        self.mm_projector = nn.Sequential(
            nn.Linear(config.bridge_config.hidden_size, config.text_config.hidden_size),
            Activation(config.projector_hidden_act, "projector_hidden_act"),
        )
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.frame_token_cache: FrameTokenCache | None = None  # see attach_frame_token_cache
        self.post_init()

    # ----- the text model's pieces, as transformers expects them
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    # ----- vision (the steps themselves live in llava.model.stream, shared with streams)
    def frame_tokens(self, features: Tensor) -> FrameTokens:
        """Tower hidden states (T, 1+P, D) -> CLS (T, D) and the bridge's tokens (T, tokens_per_frame, D)."""
        return pool_frames(features, self.config.bridge_config)

    def encode_video_frames(self, videos: list[Tensor]) -> list[FrameTokens]:
        """Pixel tensors (T_i, 3, H, W) -> per-frame CLS and pooled tokens, all videos in one tower pass.

        With a frame-token cache attached, each video that is segmented (not `reads_as_images`) comes from the
        cache or, on a miss, from a tower pass of its own; the others still share one pass."""
        cache = self.frame_token_cache
        if cache is None:
            return self.tower_frame_tokens(videos)
        self.check_tower_cacheable()
        encoded = {
            i: cache.tokens(video, lambda pixels: self.tower_frame_tokens([pixels])[0])
            for i, video in enumerate(videos)
            if not self.reads_as_images(len(video))
        }
        rest = [i for i in range(len(videos)) if i not in encoded]
        encoded.update(zip(rest, self.tower_frame_tokens([videos[i] for i in rest]), strict=True))
        return [encoded[i] for i in range(len(videos))]

    def tower_frame_tokens(self, videos: list[Tensor]) -> list[FrameTokens]:
        """The video tower on all `videos` in one pass, then `frame_tokens`: no cache."""
        return [self.frame_tokens(f) for f in self.video_tower.encode_videos(videos)]

    def attach_frame_token_cache(self, cache: FrameTokenCache | None) -> None:
        """Serve the frame tokens of segmented videos from `cache` (None: detach it), so that training with a frozen
        video tower runs the tower once per video. Refused (ConfigError) unless the tower is frozen: no parameter
        requires grad, it is in eval mode, and it has no attention dropout (which training mode would apply without
        the cache). While the cache is attached, `train()` leaves the tower in eval mode, and every use checks again.
        """
        if cache is not None:
            self.check_tower_cacheable()
        self.frame_token_cache = cache

    def check_tower_cacheable(self) -> None:
        """Raise ConfigError unless the video tower is a fixed function of its pixels (see attach_frame_token_cache)."""
        tower = self.video_tower
        problems = []
        trainable = sum(p.numel() for p in tower.parameters() if p.requires_grad)
        if trainable:
            problems.append(f"{trainable} of its parameters require grad")
        if tower.training:
            problems.append("it is in training mode")
        if tower.config.attention_dropout:
            problems.append(f"its attention dropout is {tower.config.attention_dropout}")
        if problems:
            raise ConfigError(f"a frame-token cache needs a frozen video tower in eval mode: {'; '.join(problems)}")

    def train(self, mode: bool = True):
        """As `nn.Module.train`, except that a video tower with a frame-token cache stays in eval mode."""
        super().train(mode)
        if self.frame_token_cache is not None:
            self.video_tower.eval()
        return self

    def split_segments(self, frames: FrameTokens) -> list[Tensor]:
        """SceneTilling on the CLS features; each segment subsampled to at most frames_per_segment frames."""
        return offline_segments(frames, self.config.bridge_config)

    def project(self, readout: Tensor) -> Tensor:
        """What the bridge gives the LLM (N, d) -> the LLM's visual tokens (N, h)."""
        return self.mm_projector(readout)

    def reads_as_images(self, num_frames: int) -> bool:
        """Whether a video of `num_frames` frames is read frame by frame as images (`image_branch_max_frames`: a
        released Mem checkpoint's short videos) rather than segmented."""
        return num_frames <= self.config.bridge_config.image_branch_max_frames

    def encode_videos(self, videos: list[Tensor], every_segment: bool = False) -> list:
        """Whole videos -> the projected visual tokens the LLM reads, one (N_i, h) tensor per video.

        With `every_segment`, one list per video: what the LLM would read after each of its segments.
        """
        if not videos:
            return []
        frames = self.encode_video_frames(videos)
        as_images = [self.reads_as_images(len(f.cls)) for f in frames]
        segmented = [self.split_segments(f) for f, short in zip(frames, as_images, strict=True) if not short]
        outputs: Iterator[Any] = iter(
            self.bridge.run_segments(segmented, every_segment=every_segment)[1] if segmented else []
        )
        readouts: list[Any] = []  # per video: its readout, or with `every_segment` the list of them
        for f, short in zip(frames, as_images, strict=True):
            if short:
                tokens = torch.cat(self.bridge_images(f.patches))  # (T * M, d)
                readouts.append([tokens] if every_segment else tokens)
            else:
                readouts.append(next(outputs))
        if every_segment:
            return [[self.project(o) for o in per_video] for per_video in readouts]
        return [self.project(o) for o in readouts]

    def bridge_images(self, patches: Tensor) -> list[Tensor]:
        """The tokens of N images (N, tokens_per_frame, D) -> what the LLM reads of each, unprojected: one bridge
        pass each from the initial memory, without a segment position."""
        return cast(list[Tensor], self.bridge.run_segments([[p] for p in patches], segment_positions=False)[1])

    @torch.no_grad()
    def trace_video(self, video: Tensor) -> VideoTrace:
        """One video (T, 3, H, W) through the same steps as `encode_videos`, keeping every intermediate."""
        features = self.video_tower.encode_videos([video])[0]
        if self.reads_as_images(len(features)):
            raise ValueError(f"a {len(features)}-frame video is read as images, not segmented: nothing to trace")
        frames = self.frame_tokens(features)
        config = self.config.bridge_config
        spans = segments_from_boundaries(offline_boundaries(frames, config))
        state, steps, projected = self.bridge.init_state(1), [], []
        for start, end in spans:
            tokens = segment_tokens(frames.patches, start, end, config.frames_per_segment)
            step = self.bridge.advance(state, tokens[None])
            state = step.state
            steps.append(step)
            projected.append(self.project(self.bridge.readout(state, step.hidden, 0, tokens.shape[0])))
        return VideoTrace(
            tower_hidden=features,
            boundaries=[end for _, end in spans],
            segment_frames=[subsample_segment(start, end, config.frames_per_segment) for start, end in spans],
            steps=steps,
            projected=projected,
        )

    def open_stream(self, settings: StreamSettings | None = None) -> VideoStream:
        """A live stream through this model; `settings` default to the config's `stream_*` fields."""
        return VideoStream(self, settings)

    def encode_images(self, images: list[Tensor]) -> list[Tensor]:
        """Images (3, H, W) each -> one bridge pass from the initial memory -> projected tokens."""
        if not images:
            return []
        pixels = torch.stack(images)
        tower = self.image_tower if self.image_tower is not None else self.video_tower
        patches = self.frame_tokens(tower.encode_images(pixels)).patches  # (N, tokens_per_frame, D)
        return [self.project(o) for o in self.bridge_images(patches)]

    def encode_media(self, input_ids: Tensor, attention_mask: Tensor | None, videos, images) -> list[Tensor]:
        """Encode the media and order them as their placeholders appear in `input_ids`."""
        videos, images = list(videos or []), list(images or [])
        kinds = placeholder_kinds(input_ids, attention_mask)
        wanted = (kinds.count(VIDEO_TOKEN_INDEX), kinds.count(IMAGE_TOKEN_INDEX))
        if wanted != (len(videos), len(images)):
            raise ValueError(
                f"prompts hold {wanted[0]} <video> and {wanted[1]} <image> placeholders, "
                f"but {len(videos)} videos and {len(images)} images were given"
            )
        encoded_videos = iter(self.encode_videos(videos))
        encoded_images = iter(self.encode_images(images))
        return [next(encoded_videos) if k == VIDEO_TOKEN_INDEX else next(encoded_images) for k in kinds]

    def every_segment_copies(
        self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor, videos, images
    ) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
        """The original's "loss at every recurrent iteration": a row with a video is repeated once per
        segment of that video, each copy reading the bridge output after that segment."""
        per_video = iter(self.encode_videos(list(videos or []), every_segment=True))
        per_image = iter(self.encode_images(list(images or [])))
        rows, features = [], []
        for b in range(input_ids.shape[0]):
            kinds = placeholder_kinds(input_ids[b : b + 1], attention_mask[b : b + 1])
            media = [next(per_video) if k == VIDEO_TOKEN_INDEX else [next(per_image)] for k in kinds]
            for s in range(max((len(m) for m in media), default=1)):
                rows.append(b)
                features += [m[min(s, len(m) - 1)] for m in media]
        index = torch.tensor(rows, device=input_ids.device)
        return input_ids[index], attention_mask[index], labels[index], features

    # ----- language
    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        videos: list[Tensor] | None = None,
        images: list[Tensor] | None = None,
        visual_features: list[Tensor] | None = None,
        loss_every_segment: bool = False,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Training / scoring forward. `visual_features` (already projected) skips the encoders."""
        if input_ids is None:
            raise ValueError("VideoLLaMBForCausalLM.forward needs input_ids (the placeholders say where media go)")
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        if loss_every_segment and labels is not None and visual_features is None:
            input_ids, attention_mask, labels, visual_features = self.every_segment_copies(
                input_ids, attention_mask, labels, videos, images
            )
        if visual_features is None:
            visual_features = self.encode_media(input_ids, attention_mask, videos, images)
        spliced = splice_visual_tokens(
            self.get_input_embeddings(), input_ids, visual_features, attention_mask, labels, padding_side="right"
        )
        return self.language_model(
            inputs_embeds=spliced.inputs_embeds,
            attention_mask=spliced.attention_mask,
            position_ids=spliced.position_ids,
            labels=spliced.labels,
            **kwargs,
        )

    @torch.no_grad()
    def generate(  # type: ignore[override]  # takes the media beside the ids, returns the ids only
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        videos: list[Tensor] | None = None,
        images: list[Tensor] | None = None,
        visual_features: list[Tensor] | None = None,
        prompt_prefix: PromptPrefix | None = None,
        **generate_kwargs,
    ) -> Tensor:
        """Greedy or sampled generation; returns only the new tokens (B, new).

        With `prompt_prefix` (see `cache_prompt_prefix`), every row of `input_ids` must start with its ids
        (unpadded); the LLM goes on from its cache, reading only the rest of each prompt."""
        if visual_features is None:
            visual_features = self.encode_media(input_ids, attention_mask, videos, images)
        shared = 0
        if prompt_prefix is not None:
            shared = len(prompt_prefix.ids)
            if input_ids.shape[1] <= shared or not bool((input_ids[:, :shared] == prompt_prefix.ids).all()):
                raise ValueError("every prompt must start with the cached prompt prefix")
            cache = copy.deepcopy(prompt_prefix.cache)
            cache.batch_repeat_interleave(input_ids.shape[0])
            generate_kwargs["past_key_values"] = cache
        spliced = splice_visual_tokens(
            self.get_input_embeddings(),
            input_ids,
            visual_features,
            attention_mask,
            padding_side="left",
            shared_prefix=shared,
        )
        return self.language_model.generate(
            inputs_embeds=spliced.inputs_embeds, attention_mask=spliced.attention_mask, **generate_kwargs
        )

    @torch.no_grad()
    def cache_prompt_prefix(self, ids: Tensor) -> PromptPrefix:
        """ids (P,) of plain text (no media placeholders) -> the LLM's KV cache of it, for `generate`."""
        if ids.dim() != 1 or not len(ids) or bool((ids < 0).any()):
            raise ValueError("a prompt prefix is one non-empty row of text token ids")
        embeds = self.get_input_embeddings()(ids[None])
        return PromptPrefix(ids, self.language_model(inputs_embeds=embeds, use_cache=True).past_key_values)

    def use_static_kv_cache(self) -> None:
        """Generate with a KV cache preallocated for the LLM's whole context instead of one that grows.

        On CUDA transformers then compiles the decoding step once (measured on an H200 with the 7B size: 114 vs
        29-34 tokens/s, after about 40 s of compilation on the first call). Sizing the cache for the whole context
        keeps its shape the same for every prompt, so later turns reuse the compiled step. Answers are unchanged.
        """
        generation = self.language_model.generation_config
        generation.cache_implementation = "static"
        generation.max_cache_len = self.config.text_config.max_position_embeddings

    @property
    def uses_static_kv_cache(self) -> bool:
        return self.language_model.generation_config.cache_implementation == "static"

    def set_memory_ablation(self, enabled: bool) -> None:
        """Reset the bridge memory (and cache) at every segment: the ablation that shows the memory works.
        A run-time switch of this model object: the config is untouched, so a checkpoint saved after it is not
        ablated."""
        self.bridge.reset_memory_each_segment = enabled

    @property
    def memory_ablation(self) -> bool:
        """Whether `set_memory_ablation(True)` is in force."""
        return self.bridge.reset_memory_each_segment


AutoConfig.register(VideoLLaMBConfig.model_type, VideoLLaMBConfig, exist_ok=True)
AutoModelForCausalLM.register(VideoLLaMBConfig, VideoLLaMBForCausalLM, exist_ok=True)
