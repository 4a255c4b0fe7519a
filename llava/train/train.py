"""Train VideoLLaMB from LLaVA-style conversation JSON with the transformers Trainer.

    python -m llava.train.train --model_name_or_path checkpoints/videollamb-tiny-shapes \
        --data_path data/shapes/train.json --x_folder data/shapes --num_frames 16 \
        --output_dir runs/tiny --max_steps 20 --per_device_train_batch_size 4 --use_cpu True

Launch with `torchrun --nproc_per_node=N -m llava.train.train ...` for DDP, add `--deepspeed scripts/zero2.json`
for DeepSpeed. The result is saved in this project's format, which `load_pretrained_model` reads, with
trainer_state.json (the logged losses). Its config records the frame sampling trained with (--num_frames uniformly,
or --video_fps up to --max_frames, which defaults to --num_frames), and every front end samples that way unless told
otherwise. `--frozen_tower_cache_mb N` (a frozen video tower only) keeps each video's frame tokens, so that the
tower sees each video once (`llava.model.frame_cache`). `--log_row_ids True` writes which rows each process trained
on to output_dir/row_ids.rank{r}.jsonl (see llava.train.trainer).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from transformers import HfArgumentParser, set_seed

from llava.budget_cache import MB
from llava.data.dataset import DataConfig, SupervisedDataset
from llava.errors import LlavaError
from llava.model.videollamb import VideoLLaMBForCausalLM
from llava.train.args import DataArguments, ModelArguments, TrainingArguments
from llava.train.model_init import build_model, cache_frozen_tower, set_trainable
from llava.train.trainer import RowIdCollator, VideoLLaMBTrainer
from llava.video.sampling import FrameSampling

logger = logging.getLogger(__name__)
LORA_TARGETS = r"language_model\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def apply_lora(model: VideoLLaMBForCausalLM, args: TrainingArguments):
    """LoRA adapters on the language model's projections; the bridge and projector train fully."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=LORA_TARGETS,
        modules_to_save=["bridge", "mm_projector"],
    )
    return get_peft_model(model, config)


def make_dataset(data_args: DataArguments, model: VideoLLaMBForCausalLM, tokenizer, template: str, max_length: int):
    vision = model.config.vision_config
    processor = model.config.visual_processor
    config = DataConfig(
        data_path=data_args.data_path,
        x_folder=data_args.x_folder,
        num_frames=data_args.num_frames,
        video_fps=data_args.video_fps,
        max_frames=data_args.max_frames,
        conv_template=template,
        max_length=max_length,
        image_size=vision.image_size,
        pad_images=data_args.image_aspect_ratio == "pad",
        max_bad_fraction=data_args.max_bad_fraction,
        video_cache_mb=data_args.video_cache_mb,
        judge_options=data_args.judge_options,
    )
    return SupervisedDataset(config, tokenizer, processor)


def record_sampling(model: VideoLLaMBForCausalLM, sampling: FrameSampling) -> None:
    """The model's config records the sampling trained with, so that it is served the same way: a uniform count
    (its cap on a rate is kept), or a rate and its cap (its uniform count is kept)."""
    config = model.config
    if sampling.uniform:
        config.num_frames, config.video_fps = sampling.num_frames, None
    else:
        config.video_fps, config.max_frames = sampling.fps, sampling.max_frames


def train(
    model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments
) -> VideoLLaMBForCausalLM:
    """Train and save to output_dir; returns the trained model (LoRA merged in)."""
    set_seed(training_args.seed)
    model, tokenizer = build_model(model_args)
    model.config.image_aspect_ratio = data_args.image_aspect_ratio
    model.config.conv_template = model_args.version  # served with the template it was trained with
    set_trainable(model, model_args)
    if model_args.frozen_tower_cache_mb > 0:
        cache_frozen_tower(model, model_args.frozen_tower_cache_mb)
    if training_args.gradient_checkpointing:
        model.language_model.config.use_cache = False
    dataset = make_dataset(data_args, model, tokenizer, model_args.version, training_args.model_max_length)
    record_sampling(model, dataset.config.sampling)
    trained = apply_lora(model, training_args) if training_args.lora_enable else model
    trainer = VideoLLaMBTrainer(
        model=trained,
        args=training_args,
        train_dataset=dataset,
        data_collator=RowIdCollator(tokenizer),
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_state()  # trainer_state.json (log_history) in output_dir, also when save_strategy is "no"
    cache = model.frame_token_cache
    if cache is not None:
        logger.info(
            "frame-token cache: %d hits, %d misses, %d videos (%.1f MB) held",
            cache.hits,
            cache.misses,
            len(cache),
            cache.held_bytes / MB,
        )
    if training_args.lora_enable:
        lora: Any = trainer.model  # a peft model
        trainer.model = lora.merge_and_unload()
    trainer.save_model(training_args.output_dir)
    return model


def error_line(error: LlavaError) -> str:
    """The error's message on one line. A DataLoader worker re-raises its error with the worker's traceback in
    the message ("Caught DataError in DataLoader worker process 0. Original Traceback ..."): keep the original
    message, the traceback's last line, without its class name."""
    text = str(error)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = re.sub(r"^[\w.]+: ", "", last.strip())
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))  # type: ignore[arg-type]
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    try:
        train(model_args, data_args, training_args)
    except LlavaError as err:
        print(f"error: {error_line(err)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
