"""--frozen_tower_cache_mb: training with the frozen tower's frame tokens cached logs the same losses as training
without, the cache is hit and keeps to its budget, a trained tower is refused in one line, and the demo recipe's
stages ask for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import HfArgumentParser

from llava.budget_cache import MB
from llava.model.config import VideoLLaMBConfig
from llava.train import tiny_demo
from llava.train.args import DataArguments, ModelArguments, TrainingArguments
from llava.train.train import main, train

from .conftest import losses

# 8 rows, 2 steps of 4 an epoch: 4 steps are two epochs, so every video is seen again. Both runs keep their data
# worker (a worker started anew each epoch takes a seed from the main process's random stream).
COMMON = ("--max_steps", "4", "--dataloader_num_workers", "1", "--dataloader_persistent_workers", "True")


def run(train_args, out: Path, data: Path, *extra: str):
    """Train through `llava.train.train.train` with these arguments; the trained model."""
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))  # type: ignore[arg-type]
    return train(*parser.parse_args_into_dataclasses(args=train_args(out, *COMMON, *extra, data_path=data)))


@pytest.fixture
def eight_rows(tmp_path, rows) -> Path:
    data = tmp_path / "rows.json"
    data.write_text(json.dumps(rows[:8]))
    return data


def test_training_with_the_cache_logs_the_same_losses_and_hits_it(tmp_path, train_args, rows, eight_rows):
    plain = run(train_args, tmp_path / "plain", eight_rows)
    model = run(train_args, tmp_path / "cached", eight_rows, "--frozen_tower_cache_mb", "8")
    assert plain.frame_token_cache is None
    cache = model.frame_token_cache
    videos = len({row["video"] for row in rows[:8]})
    # each video through the tower once; the other 16 - videos samples of the 4 steps are hits
    assert (cache.misses, cache.hits, len(cache)) == (videos, 16 - videos, videos)
    logged, expected = losses(tmp_path / "cached"), losses(tmp_path / "plain")
    assert sorted(logged) == [1, 2, 3, 4]
    # measured equal bit for bit (the tower is batch invariant here); 1e-6 only allows for other CPU kernels
    assert logged == pytest.approx(expected, rel=1e-6, abs=0)


def test_a_small_budget_holds_and_the_losses_stay_the_same(tmp_path, train_args, rows, eight_rows, model_config):
    plain = tmp_path / "plain"
    run(train_args, plain, eight_rows)
    config = VideoLLaMBConfig.from_json_file(str(model_config))
    bridge = config.bridge_config
    one_video = 4 * (bridge.tokens_per_frame + 1) * bridge.hidden_size * 4  # 4 frames: tokens and CLS, float32
    budget_mb = 1.5 * one_video / MB
    model = run(train_args, tmp_path / "small", eight_rows, "--frozen_tower_cache_mb", repr(budget_mb))
    cache = model.frame_token_cache
    assert cache.held_bytes == one_video <= cache.budget_bytes < 2 * one_video and len(cache) == 1
    assert cache.misses > len({row["video"] for row in rows[:8]})  # evicted videos went through the tower again
    assert losses(tmp_path / "small") == pytest.approx(losses(plain), rel=1e-6, abs=0)


def test_a_trained_tower_is_refused_in_one_line(tmp_path, train_args, capsys):
    code = main(train_args(tmp_path, "--freeze_video_tower", "False", "--frozen_tower_cache_mb", "8"))
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1, err
    assert "--frozen_tower_cache_mb needs a frozen video tower" in errors[0] and "Traceback" not in err
    assert not (tmp_path / "model.safetensors").exists()


def test_the_demo_recipes_stages_cache_the_frozen_tower(tmp_path):
    model_args, _, _ = tiny_demo.stage_arguments(tmp_path, tmp_path, tmp_path, tiny_demo.LONG_STAGE, 24, 0)
    assert model_args.frozen_tower_cache_mb == tiny_demo.FROZEN_TOWER_CACHE_MB > 0 and model_args.freeze_video_tower
