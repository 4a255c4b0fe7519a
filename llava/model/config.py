"""VideoLLaMBConfig: one nested config (text, vision, bridge) holding every constant of the original.

The defaults reproduce the released VideoLLaMB-7B. `VideoLLaMBConfig.from_released_dict` reads the
released `config.json` layout (`model_type: llava_llama` with `mm_*` keys and relative tower paths), and gives
it the release's input preprocessing (frame resize, rate sampling, SceneTilling precision, prompt template);
this project's checkpoints record their own (the field defaults, for configs saved before these fields existed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transformers import AutoConfig, LlamaConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from llava.conversation import DEFAULT_TEMPLATE, RELEASE_TEMPLATE, TEMPLATES
from llava.errors import ConfigError
from llava.video.sampling import RATE_RULES, FrameSampling
from llava.video.scenetilling import ONLINE_ALPHA, ONLINE_MIN_DEPTH, SCENETILLING_PRECISIONS
from llava.video.transforms import VisualProcessor

BRIDGE_VARIANTS = ("default", "mem")
LLM_INPUTS = ("last_segment", "memories", "memory_and_last_segment", "memories_and_last_segment")
FRAME_POOLS = ("avg", "max")
# what SceneTilling compares per frame: the CLS feature (as the release does), or the tokens the bridge reads
SCENETILLING_FEATURES = ("cls", "tokens")


class VisionTowerConfig(PreTrainedConfig):
    """A LanguageBind (CLIP ViT) tower. `temporal_window` frames share temporal attention in the video tower."""

    model_type = "languagebind_vision"
    base_config_key = "vision_config"

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 14
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    temporal_window: int = 8
    temporal_causal: bool = False  # True: a frame attends only to earlier frames of its window (streamable)
    select_layer: int = -2

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_layers_needed(self) -> int:
        """Encoder layers that must run to produce hidden state `select_layer` (index 0 is the embeddings)."""
        total = self.num_hidden_layers + 1
        index = self.select_layer if self.select_layer >= 0 else total + self.select_layer
        if not 0 <= index < total:
            raise ConfigError(f"select_layer {self.select_layer} is outside 0..{total - 1}")
        return index


class BridgeConfig(PreTrainedConfig):
    """The Memory Bridge and SceneTilling: every constant the released model hard-codes is a field here."""

    model_type = "videollamb_bridge"
    base_config_key = "bridge_config"

    hidden_size: int = 1024
    num_attention_heads: int = 8
    intermediate_size: int = 4096
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    num_memory_tokens: int = 32
    pool_size: int = 12
    frame_pool: str = "avg"
    frame_cls_token: bool = False  # the frame's CLS joins its pooled tokens in the bridge (the release drops it)
    frames_per_segment: int = 8
    scenetilling_k: int | None = 3
    scenetilling_alpha: float = 0.5
    scenetilling_max_cuts: int = 15
    scenetilling_min_length: int = 1
    scenetilling_feature: str = "cls"  # one of SCENETILLING_FEATURES, offline and in streams
    # "float64": depths from float64 similarities (this project's checkpoints); "feature_dtype": the release's
    # operations in the features' own dtype (the model's: float16 in the release's loader), so its cuts reproduce
    scenetilling_precision: str = "float64"
    variant: str = "default"
    llm_input: str | None = None  # what the LLM reads; None = the variant's own (see `readout_mode`)
    memory_init_std: float = 0.0  # 0 = the original's zero-initialised memory (its tokens start identical)
    max_segment_positions: int = 1024
    # a learned position added to the tokens of video segment s (`segment_position_emb`); None: the variant's own
    # (the "mem" variant has them, as the release's `abs_vid_pe`; the default variant has none)
    segment_position_embeddings: bool | None = None
    # a video of at most this many frames is read frame by frame as images, each from the initial memory with no
    # segment position (the release Mem code's `t <= 3` branch: 3 for a released Mem checkpoint); 0: never
    image_branch_max_frames: int = 0
    max_cache_segments: int | None = None  # whole videos: the bridge cache keeps at most this many blocks (None: all)
    # streams (llava.model.stream): online SceneTilling decides each cut from the frames seen so far
    # a cut's depth is this many standard deviations above the running mean, and at least min_depth (cosine units:
    # still scenes never cut)
    stream_scenetilling_alpha: float = ONLINE_ALPHA
    stream_scenetilling_min_depth: float = ONLINE_MIN_DEPTH
    stream_scenetilling_min_length: int = 1  # frames of a segment before it may end
    stream_scenetilling_max_length: int | None = None  # a segment ends after this many frames (a long still scene)
    stream_max_cache_segments: int | None = 64  # a stream's bridge cache (and memories) keep this many: flat memory

    def __post_init__(self, **kwargs: Any) -> None:
        # an ablation switch saved by earlier versions: now a run-time option (`set_memory_ablation`), never loaded
        kwargs.pop("reset_memory_each_segment", None)
        super().__post_init__(**kwargs)
        if self.variant not in BRIDGE_VARIANTS:
            raise ConfigError(f"unknown bridge variant {self.variant!r}; valid: {', '.join(BRIDGE_VARIANTS)}")
        if self.llm_input is not None and self.llm_input not in LLM_INPUTS:
            raise ConfigError(f"unknown llm_input {self.llm_input!r}; valid: {', '.join(LLM_INPUTS)}")
        if self.scenetilling_precision not in SCENETILLING_PRECISIONS:
            raise ConfigError(
                f"unknown scenetilling_precision {self.scenetilling_precision!r}; "
                f"valid: {', '.join(SCENETILLING_PRECISIONS)}"
            )
        if self.scenetilling_feature not in SCENETILLING_FEATURES:
            raise ConfigError(
                f"unknown scenetilling_feature {self.scenetilling_feature!r}; valid: {', '.join(SCENETILLING_FEATURES)}"
            )
        if self.frame_pool not in FRAME_POOLS:
            raise ConfigError(f"unknown frame_pool {self.frame_pool!r}; valid: {', '.join(FRAME_POOLS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError("bridge hidden_size must be a multiple of num_attention_heads")
        low, high = self.stream_scenetilling_min_length, self.stream_scenetilling_max_length
        if low < 1 or (high is not None and high < low):
            raise ConfigError(f"stream_scenetilling_min_length {low} must be >= 1 and <= the max_length {high}")

    @property
    def readout_mode(self) -> str:
        """What the LLM reads: "last_segment" (default variant: H~ of the last segment), "memories" (mem
        variant: [M_1; ...; M_S]), "memory_and_last_segment" ([M_S; H~_S]: the final memory and the last segment)
        or "memories_and_last_segment" ([M_1; ...; M_S; H~_S]: every segment's memory and the last segment)."""
        if self.llm_input is not None:
            return self.llm_input
        return "memories" if self.variant == "mem" else "last_segment"

    @property
    def has_segment_positions(self) -> bool:
        """Whether video segments get a learned segment position (see `segment_position_embeddings`)."""
        if self.segment_position_embeddings is not None:
            return self.segment_position_embeddings
        return self.variant == "mem"

    @property
    def tokens_per_frame(self) -> int:
        return self.pool_size * self.pool_size + int(self.frame_cls_token)


class VideoLLaMBConfig(PreTrainedConfig):
    """Composition of a causal LM (`text_config`), the LanguageBind towers (`vision_config`) and the bridge."""

    model_type = "videollamb"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
        "vision_config": SubConfigSpec(config_class=VisionTowerConfig),
        "bridge_config": SubConfigSpec(config_class=BridgeConfig),
    }

    if TYPE_CHECKING:  # built sub-configs, whatever was given (SubConfigSpec turns a dict or None into one)
        text_config: LlamaConfig | Any = None
        vision_config: VisionTowerConfig | Any = None
        bridge_config: BridgeConfig | Any = None
    else:
        text_config: dict | PreTrainedConfig | None = None
        vision_config: dict | PreTrainedConfig | None = None
        bridge_config: dict | PreTrainedConfig | None = None
    # Frame sampling (see `frame_sampling`): uniformly num_frames, or video_fps frames per second up to max_frames.
    # Independent of bridge_config.frames_per_segment, the most frames one segment keeps (a cap, not a count).
    num_frames: int = FrameSampling.num_frames
    video_fps: float | None = FrameSampling.fps
    max_frames: int = FrameSampling.max_frames
    rate_sampling: str = FrameSampling.rate_rule  # how a rate picks its frames (`FrameSampling.rate_rule`)
    resize_antialias: bool = True  # frames shrink with an antialiased bilinear resize (the release: without)
    conv_template: str = DEFAULT_TEMPLATE  # the prompt template the model was trained with
    image_aspect_ratio: str = "pad"
    use_image_tower: bool = True
    projector_hidden_act: str = "gelu"
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.rate_sampling not in RATE_RULES:
            raise ConfigError(f"unknown rate_sampling {self.rate_sampling!r}; valid: {', '.join(RATE_RULES)}")
        if self.conv_template not in TEMPLATES:
            raise ConfigError(f"unknown conv_template {self.conv_template!r}; valid: {', '.join(sorted(TEMPLATES))}")

    @property
    def frame_sampling(self) -> FrameSampling:
        """How this model samples a video (a checkpoint without video_fps / max_frames samples num_frames uniformly).
        A `rate_sampling` assigned after loading is checked here (ConfigError)."""
        return FrameSampling(
            num_frames=self.num_frames, fps=self.video_fps, max_frames=self.max_frames, rate_rule=self.rate_sampling
        )

    @property
    def visual_processor(self) -> VisualProcessor:
        """The pixel preprocessing this model was trained with (size, image padding, frame resize)."""
        return VisualProcessor(
            size=self.vision_config.image_size,
            pad_images=self.image_aspect_ratio == "pad",
            resize_antialias=self.resize_antialias,
        )

    @classmethod
    def from_released_dict(cls, released: dict[str, Any]) -> VideoLLaMBConfig:
        """Build a config from the released `llava_llama` config.json (LLaMA fields + `mm_*` keys)."""
        if released.get("model_type") != "llava_llama":
            raise ConfigError(f"not a released VideoLLaMB config: model_type {released.get('model_type')!r}")
        if released.get("mm_projector_type", "rmt_r_transformer1x") != "rmt_r_transformer1x":
            raise ConfigError(f"unsupported mm_projector_type {released['mm_projector_type']!r}")
        text_fields = set(LlamaConfig.default_config_fields())
        text = {k: v for k, v in released.items() if k in text_fields and not k.startswith("mm_")}
        text.pop("architectures", None)
        text["model_type"] = "llama"
        bridge = {
            "hidden_size": released.get("mm_hidden_size", 1024),
            "num_attention_heads": released.get("mm_num_attention_heads", 8),
            "intermediate_size": released.get("mm_intermediate_size", 4096),
            "hidden_act": released.get("mm_hidden_act", "gelu"),
            "hidden_dropout_prob": released.get("mm_hidden_dropout_prob", 0.1),
            "attention_probs_dropout_prob": released.get("mm_attention_probs_dropout_prob", 0.1),
            "layer_norm_eps": released.get("mm_layer_norm_eps", 1e-12),
            "scenetilling_precision": "feature_dtype",
        }
        vision = {"select_layer": released.get("mm_vision_select_layer", -2)}
        return cls(
            text_config=text,
            vision_config=vision,
            bridge_config=bridge,
            num_frames=released.get("num_frames", FrameSampling.num_frames),
            image_aspect_ratio=released.get("image_aspect_ratio", "pad"),
            use_image_tower="IMAGE" in released.get("X", ["VIDEO", "IMAGE"]),
            # what the release fed its model (README "Released checkpoints"); a Mem checkpoint's loader sets
            # rate_sampling = "release_mem"
            rate_sampling="release_videollamb",
            resize_antialias=False,
            conv_template=RELEASE_TEMPLATE,
        )
