"""--video_cache_mb: parsed as a data argument, handed to the dataset, and training with it (in a persistent data
worker, over two epochs) logs the same losses as training without it.

Both runs keep their worker (`--dataloader_persistent_workers`): a worker started anew each epoch takes a seed
from the main process's random stream, which moves the tiny model's bridge dropout masks of later epochs."""

from __future__ import annotations

import json

from transformers import AutoTokenizer, HfArgumentParser

from llava.budget_cache import MB
from llava.model.config import VideoLLaMBConfig
from llava.model.videollamb import VideoLLaMBForCausalLM
from llava.train.args import DataArguments, ModelArguments, TrainingArguments
from llava.train.train import main, make_dataset

from .conftest import losses


def test_the_flag_reaches_the_datasets_cache(tmp_path, train_args, model_config, tokenizer_dir):
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))  # type: ignore[arg-type]
    _, data_args, _ = parser.parse_args_into_dataclasses(args=train_args(tmp_path, "--video_cache_mb", "16"))
    assert data_args.video_cache_mb == 16
    model = VideoLLaMBForCausalLM(VideoLLaMBConfig.from_json_file(str(model_config)))
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    dataset = make_dataset(data_args, model, tokenizer, "llava_v1", 512)
    assert dataset.config.video_cache_mb == 16 and dataset.video_cache.budget_bytes == 16 * MB
    _, default_args, _ = parser.parse_args_into_dataclasses(args=train_args(tmp_path))
    assert make_dataset(default_args, model, tokenizer, "llava_v1", 512).video_cache.budget_bytes == 0


def test_training_with_the_cache_logs_the_same_losses(tmp_path, train_args, rows):
    data = tmp_path / "rows.json"
    data.write_text(json.dumps(rows[:8]))  # 2 steps of 4 rows an epoch: 4 steps are two epochs
    common = ["--max_steps", "4", "--dataloader_num_workers", "1", "--dataloader_persistent_workers", "True"]
    assert main(train_args(tmp_path / "plain", *common, data_path=data)) == 0
    assert main(train_args(tmp_path / "cached", *common, "--video_cache_mb", "8", data_path=data)) == 0
    assert losses(tmp_path / "cached") == losses(tmp_path / "plain")
    assert sorted(losses(tmp_path / "plain")) == [1, 2, 3, 4]
