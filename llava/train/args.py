"""Command-line arguments of `llava.train.train`, with the original's flag names where they still apply."""

from __future__ import annotations

from dataclasses import dataclass, field

import transformers

from llava.conversation import DEFAULT_TEMPLATE
from llava.video.sampling import FrameSampling


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "a VideoLLaMB checkpoint (this project's or the released layout) or a Llama LM folder"},
    )
    model_config: str | None = field(
        default=None, metadata={"help": "a VideoLLaMBConfig JSON: build a fresh model from it (no base weights)"}
    )
    tokenizer_path: str | None = field(default=None, metadata={"help": "tokenizer folder, if not the model's"})
    version: str = field(default=DEFAULT_TEMPLATE, metadata={"help": "conversation template"})
    video_tower: str | None = field(default=None, metadata={"help": "LanguageBind_Video_merge folder"})
    image_tower: str | None = field(default=None, metadata={"help": "LanguageBind_Image folder"})
    mm_projector_type: str = field(default="rmt_r_transformer1x", metadata={"help": "only the memory bridge exists"})
    freeze_video_tower: bool = field(default=True)
    frozen_tower_cache_mb: float = field(
        default=0.0,
        metadata={
            "help": "keep the frozen video tower's per-frame output (CLS and pooled tokens) of each segmented video "
            "in memory, up to this many MB, so each video goes through the tower once (0: off; refused for a trained "
            "tower)"
        },
    )
    freeze_image_tower: bool = field(default=True)
    freeze_backbone: bool = field(default=False, metadata={"help": "freeze the language model"})
    tune_mm_mlp_adapter: bool = field(default=False, metadata={"help": "train only the bridge and projector"})
    freeze_mm_mlp_adapter: bool = field(
        default=False, metadata={"help": "freeze the bridge and projector (what the LLM reads stays as it was)"}
    )
    freeze_bridge: bool = field(
        default=False,
        metadata={"help": "freeze the memory bridge (what its memory keeps stays as it was); the projector trains"},
    )
    tune_top_layers: int = field(
        default=0,
        metadata={
            "help": "train only the LLM's top N decoder layers, final norm and output head, everything else frozen "
            "(LLaMA Pro's tuning of the layers `llava.model.expand` adds; 0: off)"
        },
    )


@dataclass
class DataArguments:
    data_path: str = field(default="", metadata={"help": "LLaVA conversation JSON (or JSONL)"})
    x_folder: str = field(default="", metadata={"help": "root that the rows' video / image paths are joined to"})
    num_frames: int = field(
        default=FrameSampling.num_frames,
        metadata={"help": "frames sampled uniformly per video (with video_fps: the default cap)"},
    )
    video_fps: float | None = field(default=None, metadata={"help": "sample videos at this rate instead"})
    max_frames: int | None = field(
        default=None, metadata={"help": "with video_fps, the most frames sampled (default: num_frames)"}
    )
    image_aspect_ratio: str = field(default="pad", metadata={"help": "pad (to square, mean colour) or crop"})
    max_bad_fraction: float = field(default=0.01, metadata={"help": "stop when more rows than this are unreadable"})
    video_cache_mb: float = field(
        default=0.0,
        metadata={
            "help": "keep decoded, preprocessed videos in memory up to this many MB per data worker (0: none); "
            "with --dataloader_persistent_workers True it lasts across epochs"
        },
    )
    judge_options: bool = field(
        default=False,
        metadata={
            "help": "rows asked with lettered options and answered by a letter also learn, at the end of each "
            "option line, whether that option is the answer (how a small LLM learns the lettered prompt); texts a "
            "row names in its 'judgements' learn whether they are right, at their end"
        },
    )


@dataclass
class TrainingArguments(transformers.TrainingArguments):
    model_max_length: int = field(default=2048)
    group_by_modality_length: bool = field(default=False, metadata={"help": "each global batch holds one modality"})
    loss_per_iteration: bool = field(
        default=False, metadata={"help": "cross-entropy after every bridge segment (finetune_video_image_loss)"}
    )
    log_row_ids: bool = field(
        default=False,
        metadata={"help": "append {rank, step, ids} JSON lines to output_dir/row_ids.rank{r}.jsonl per batch"},
    )
    lora_enable: bool = field(default=False)
    lora_r: int = field(default=64)
    lora_alpha: int = field(default=16)
    lora_dropout: float = field(default=0.05)
    remove_unused_columns: bool = field(default=False)
    ddp_find_unused_parameters: bool | None = field(default=True)
