"""VideoCache on its own (hits, copies, the budget, least-recently-used eviction) and in SupervisedDataset on real
mp4s: a cached sample is bit-identical to a decoded one, each video is decoded once, unreadable rows stay bad."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llava.budget_cache import MB
from llava.conversation import VICUNA_SYSTEM
from llava.data import shapes_dataset
from llava.data.dataset import DataConfig, SupervisedDataset
from llava.data.video_cache import VideoCache
from llava.errors import ConfigError, DataError, VideoError
from llava.train.sentencepiece_tokenizer import train_tokenizer

FRAMES, SIZE = 4, 32
QUARTER_MB = MB // 4 // 4  # float32 elements in a quarter of a megabyte


class Loads:
    """A `load` for VideoCache.get that counts its calls and returns a tensor of `elements` float32 values."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, key: str, elements: int = QUARTER_MB):
        def load() -> torch.Tensor:
            self.calls.append(key)
            return torch.full((elements,), float(len(self.calls)))

        return load


# --- the cache ---------------------------------------------------------------------------------------------------
def test_a_key_is_loaded_once_and_each_caller_gets_its_own_copy():
    cache, loads = VideoCache(1), Loads()
    first = cache.get("a", loads("a"))
    first.add_(100)  # a caller changing its tensor ...
    again = cache.get("a", loads("a"))
    assert loads.calls == ["a"] and (cache.hits, cache.misses) == (1, 1)
    assert torch.equal(again, torch.full((QUARTER_MB,), 1.0))  # ... does not change what the next caller gets
    again.add_(100)
    assert torch.equal(cache.get("a", loads("a")), torch.full((QUARTER_MB,), 1.0))


def test_the_least_recently_used_entries_go_first_to_stay_within_the_budget():
    cache, loads = VideoCache(1), Loads()  # four quarter-megabyte entries fit
    for key in "abcd":
        cache.get(key, loads(key))
    cache.get("a", loads("a"))  # "a" used again: "b" is now the oldest
    cache.get("e", loads("e"))
    assert "b" not in cache and all(key in cache for key in "acde")
    assert cache.held_bytes == 4 * QUARTER_MB * 4 <= cache.budget_bytes
    cache.get("f", loads("f", elements=3 * QUARTER_MB))  # three quarters: the three oldest make way
    assert [key for key in "acdef" if key in cache] == ["e", "f"]
    assert cache.held_bytes == cache.budget_bytes
    assert loads.calls == list("abcdef")


def test_a_tensor_larger_than_the_budget_is_returned_but_not_kept():
    cache, loads = VideoCache(1), Loads()
    cache.get("small", loads("small"))
    big = cache.get("big", loads("big", elements=5 * QUARTER_MB))
    assert big.numel() == 5 * QUARTER_MB
    assert "big" not in cache and "small" in cache  # nothing was evicted for it either
    cache.get("big", loads("big", elements=5 * QUARTER_MB))
    assert loads.calls == ["small", "big", "big"]


def test_a_zero_budget_keeps_nothing_and_a_negative_one_is_refused():
    cache, loads = VideoCache(0), Loads()
    cache.get("a", loads("a"))
    cache.get("a", loads("a"))
    assert loads.calls == ["a", "a"] and len(cache) == 0
    with pytest.raises(ValueError, match="at least 0 MB"):
        VideoCache(-1)


def test_a_failed_load_keeps_nothing():
    cache = VideoCache(1)

    def fail() -> torch.Tensor:
        raise VideoError("clip.mp4: cannot open video")

    with pytest.raises(VideoError):
        cache.get("a", fail)
    assert len(cache) == 0 and cache.held_bytes == 0


# --- in the dataset ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """2 synthetic videos, each asked several questions, and a row whose 'mp4' does not decode."""
    root = tmp_path_factory.mktemp("world")
    shapes_dataset.main(["--out", str(root), "--num-videos", "2", "--max-scenes", "2", "--seed", "3", "--quiet"])
    (root / "videos" / "corrupt.mp4").write_text("this is not a video\n")
    rows = json.loads((root / "train.json").read_text())
    broken = {**rows[0], "id": "corrupt_row", "video": "videos/corrupt.mp4"}
    (root / "rows.json").write_text(json.dumps(rows + [broken]))
    return root


@pytest.fixture(scope="module")
def tokenizer(world, tmp_path_factory):
    rows = json.loads((world / "rows.json").read_text())
    texts = [VICUNA_SYSTEM, "USER: ASSISTANT:"] + [t["value"] for r in rows for t in r["conversations"]]
    return train_tokenizer(texts, tmp_path_factory.mktemp("tok"), vocab_size=320)


def make_dataset(world: Path, tokenizer, video_cache_mb: float, **overrides) -> SupervisedDataset:
    settings = {"num_frames": FRAMES, "image_size": SIZE, "max_bad_fraction": 0.5} | overrides
    config = DataConfig(str(world / "rows.json"), x_folder=str(world), video_cache_mb=video_cache_mb, **settings)
    return SupervisedDataset(config, tokenizer)


def readable(dataset: SupervisedDataset) -> list[int]:
    return [i for i, row in enumerate(dataset.rows) if row["id"] != "corrupt_row"]


@pytest.mark.parametrize("sampling", [{}, {"video_fps": 1.0, "num_frames": 64}], ids=["uniform", "1fps"])
def test_cached_samples_equal_decoded_ones_and_each_video_is_decoded_once(world, tokenizer, sampling):
    cached, decoded = make_dataset(world, tokenizer, 64, **sampling), make_dataset(world, tokenizer, 0, **sampling)
    videos = {row["video"] for row in cached.rows if row["id"] != "corrupt_row"}
    assert len(readable(cached)) > len(videos) == 2  # rows share videos
    for _ in range(2):  # a second epoch
        for index in readable(cached):
            sample, reference = cached[index], decoded[index]
            assert sample is not None and reference is not None
            assert sample["video"].dtype == reference["video"].dtype == torch.float32
            assert torch.equal(sample["video"], reference["video"])  # bit for bit
            assert torch.equal(sample["input_ids"], reference["input_ids"])
    assert cached.video_cache.misses == len(videos) and len(cached.video_cache) == len(videos)
    assert cached.video_cache.hits == 2 * len(readable(cached)) - len(videos)


def test_the_cache_is_keyed_by_the_sampling(world, tokenizer):
    dataset = make_dataset(world, tokenizer, 64)
    index = readable(dataset)[0]
    uniform = dataset[index]["video"]
    dataset.config.num_frames = FRAMES + 2  # the same dataset asked for other frames: not served the old ones
    assert dataset[index]["video"].shape[0] == FRAMES + 2 and uniform.shape[0] == FRAMES
    assert dataset.video_cache.misses == 2


def test_an_unreadable_video_stays_a_bad_row_with_the_cache(world, tokenizer):
    dataset = make_dataset(world, tokenizer, 64, max_bad_fraction=0.01)  # one unreadable row allowed
    broken = next(i for i, row in enumerate(dataset.rows) if row["id"] == "corrupt_row")
    assert dataset[broken] is None
    assert dataset[broken] is None  # not cached as anything: read again, and the same row is not a new bad row
    assert dataset.bad_media.keys() == {"corrupt_row"} and len(dataset.video_cache) == 0
    other = {**dataset.rows[broken], "id": "corrupt_again"}
    dataset.rows.append(other)
    with pytest.raises(DataError, match="2 of .* rows unreadable"):
        dataset[len(dataset) - 1]


def test_a_negative_budget_is_a_config_error(world):
    with pytest.raises(ConfigError, match="video_cache_mb"):
        DataConfig(str(world / "rows.json"), video_cache_mb=-1)
