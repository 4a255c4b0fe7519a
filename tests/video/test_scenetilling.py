"""Tests of llava.video.scenetilling against a literal O(T^2) implementation of the definition."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llava.video.scenetilling import (
    OnlineSceneTiller,
    depth_scores,
    release_depth_scores,
    segment,
    segments_from_boundaries,
    similarities,
    subsample_segment,
)
from tests.benchmark_scripts import load_benchmark

naive = load_benchmark("naive_scenetilling")


def _random_features(rng: np.random.Generator) -> np.ndarray:
    """Continuous features, or features drawn from a small set (repeated similarities, ties)."""
    num_frames = int(rng.integers(1, 61))
    dim = int(rng.integers(1, 40))
    if rng.random() < 0.5:
        return rng.normal(size=(num_frames, dim))
    palette = rng.normal(size=(int(rng.integers(1, 4)), dim))
    return palette[rng.integers(0, len(palette), size=num_frames)]


def _scenes(rng: np.random.Generator, lengths: list[int], dim: int = 64, noise: float = 0.1) -> np.ndarray:
    """Unit scene vectors plus small noise; hard changes between scenes."""
    frames = []
    for length in lengths:
        center = rng.normal(size=dim)
        center /= np.linalg.norm(center)
        frames.append(center + rng.normal(scale=noise / np.sqrt(dim), size=(length, dim)))
    return np.concatenate(frames)


def _true_cuts(lengths: list[int]) -> list[int]:
    return [int(x) - 1 for x in np.cumsum(lengths)]


def _segment_lengths(boundaries: list[int]) -> list[int]:
    return [e - s + 1 for s, e in segments_from_boundaries(boundaries)]


# ---------------------------------------------------------------- exact agreement with the definition


def test_depth_scores_equal_naive() -> None:
    rng = np.random.default_rng(0)
    for case in range(300):
        n = int(rng.integers(0, 60))
        sims = rng.integers(0, 4, size=n) / 4.0 if case % 2 else rng.uniform(-1, 1, size=n)
        ours = depth_scores(sims)
        assert ours.shape == (n,)
        np.testing.assert_array_equal(ours, np.asarray(naive.naive_depths(list(sims)), dtype=np.float64))


def test_depth_scores_torch_roundtrip() -> None:
    sims = torch.tensor([0.9, 0.5, 0.7, 0.7, 0.2, 0.8], dtype=torch.float32)
    out = depth_scores(sims)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    expected = naive.naive_depths(sims.double().tolist())
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-6)


def test_segment_equals_naive_on_random_inputs() -> None:
    rng = np.random.default_rng(1)
    for _ in range(300):
        feats = _random_features(rng)
        num_frames = len(feats)
        settings = [
            dict(k=int(rng.integers(0, 4))),
            dict(k=num_frames + 2),  # k beyond the number of candidates
            dict(k=int(rng.integers(1, 6)), min_length=int(rng.integers(2, 5))),
            dict(alpha=float(rng.choice([0.0, 0.5, 1.5]))),
            dict(alpha=0.0, max_cuts=3),
            dict(alpha=-0.5, max_cuts=None, min_length=int(rng.integers(2, 5))),
        ]
        np.testing.assert_array_equal(similarities(feats), naive.naive_similarities(feats))
        for kwargs in settings:
            ours = segment(feats, **kwargs)
            assert ours == naive.naive_segment(feats, **kwargs), (num_frames, kwargs)
            assert all(type(b) is int for b in ours)
            assert ours == sorted(set(ours)) and ours[-1] == num_frames - 1
            if num_frames >= kwargs.get("min_length", 1):
                assert min(_segment_lengths(ours)) >= kwargs.get("min_length", 1)


# ---------------------------------------------------------------- edge cases and tie-breaking


def test_edge_cases() -> None:
    rng = np.random.default_rng(2)
    assert segment(rng.normal(size=(1, 8))) == [0]
    assert segment(rng.normal(size=(1, 8)), k=3) == [0]
    two = rng.normal(size=(2, 8))
    assert segment(two) == [1]  # one depth: std undefined, no cut
    assert segment(two, k=1) == [0, 1]
    assert segment(rng.normal(size=(7, 8)), k=100) == list(range(7))
    constant = np.tile(rng.normal(size=(1, 16)), (50, 1))
    assert segment(constant) == [49]
    assert segment(constant, alpha=-1.0) == [49]
    assert segment(np.zeros((5, 3))) == [4]
    assert segment(np.zeros((0, 3))) == []
    assert segment(rng.normal(size=(5, 4)), min_length=10) == [4]
    with pytest.raises(ValueError):
        segment(rng.normal(size=(5, 4)), k=-1)
    with pytest.raises(ValueError):
        segment(np.full((3, 2), np.nan))


def test_ties_go_to_lower_index() -> None:
    u, v, w = np.eye(3)
    feats = np.stack([u, u, v, v, w, w])  # sims 1,0,1,0,1: depth 2 at 1 and at 3
    np.testing.assert_allclose(depth_scores(similarities(feats)), [0, 2, 0, 2, 0])
    assert segment(feats, k=1) == [1, 5]
    assert segment(feats, k=2) == [1, 3, 5]
    assert segment(feats, alpha=0.0, max_cuts=1) == [1, 5]


def test_torch_input_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    lengths = [12, 30, 7, 20]
    feats = _scenes(rng, lengths)
    sims_t = similarities(torch.from_numpy(feats).float())
    assert isinstance(sims_t, torch.Tensor) and sims_t.shape == (len(feats) - 1,)
    np.testing.assert_allclose(sims_t.double().numpy(), similarities(feats), atol=1e-5)
    assert segment(torch.from_numpy(feats).float()) == segment(feats) == _true_cuts(lengths)
    assert segment(torch.from_numpy(feats).half(), k=3) == _true_cuts(lengths)


def test_segments_and_subsampling() -> None:
    assert segments_from_boundaries([2, 5, 6]) == [(0, 2), (3, 5), (6, 6)]
    assert segments_from_boundaries([]) == []
    with pytest.raises(ValueError):
        segments_from_boundaries([3, 3])
    assert subsample_segment(3, 5, 8) == [3, 4, 5]
    assert subsample_segment(0, 9, 4) == np.linspace(0, 9, 4).astype(int).tolist() == [0, 3, 6, 9]
    assert subsample_segment(10, 30, 6) == np.linspace(10, 30, 6).astype(int).tolist()
    assert subsample_segment(7, 7, 1) == [7]
    assert subsample_segment(0, 100, 1) == [0]
    for start, end, m in [(0, 99, 7), (5, 6, 3), (13, 200, 32)]:
        picked = subsample_segment(start, end, m)
        assert len(picked) == min(m, end - start + 1) and picked == sorted(set(picked))
        assert picked[0] == start and picked[-1] == end


# ---------------------------------------------------------------- synthetic scenes


def test_offline_finds_true_scene_cuts() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        lengths = [int(x) for x in rng.integers(3, 40, size=int(rng.integers(2, 15)))]
        feats = _scenes(rng, lengths)
        truth = _true_cuts(lengths)
        assert segment(feats) == truth
        assert segment(feats, k=len(lengths) - 1) == truth


def test_min_length_respected() -> None:
    rng = np.random.default_rng(5)
    lengths = [10, 1, 2, 10, 3, 1, 12]
    feats = _scenes(rng, lengths)
    assert segment(feats, alpha=0.0) == _true_cuts(lengths)
    for mode in (dict(), dict(k=6), dict(alpha=-1.0, max_cuts=None)):
        for min_length in (2, 3, 5):
            cuts = segment(feats, min_length=min_length, **mode)
            assert min(_segment_lengths(cuts)) >= min_length
            assert cuts == naive.naive_segment(feats, min_length=min_length, **mode)


def _run_online(tiller: OnlineSceneTiller, feats: np.ndarray, offset: int = 0) -> list[int]:
    """Boundaries (frame that ended a segment) decided while pushing ``feats``."""
    return [offset + t - 1 for t in range(len(feats)) if tiller.push(feats[t])]


def test_online_finds_true_cuts_of_long_stream() -> None:
    rng = np.random.default_rng(6)
    lengths = [int(x) for x in rng.integers(5, 80, size=80)]
    feats = _scenes(rng, lengths)
    assert _run_online(OnlineSceneTiller(), feats) == _true_cuts(lengths)[:-1]
    torch_tiller = OnlineSceneTiller()
    assert [t - 1 for t in range(len(feats)) if torch_tiller.push(torch.from_numpy(feats[t]).float())] == (
        _true_cuts(lengths)[:-1]
    )


def test_online_never_cuts_static_noisy_scene() -> None:
    rng = np.random.default_rng(7)
    feats = _scenes(rng, [5000], noise=0.3)
    assert _run_online(OnlineSceneTiller(), feats) == []
    assert _run_online(OnlineSceneTiller(alpha=0.0), feats) == []


def test_online_min_and_max_length() -> None:
    rng = np.random.default_rng(8)
    static = _scenes(rng, [95])
    assert _run_online(OnlineSceneTiller(max_length=10), static) == list(range(9, 94, 10))
    lengths = [10, 2, 1, 10, 3, 10]
    feats = _scenes(rng, lengths)
    assert _run_online(OnlineSceneTiller(), feats) == _true_cuts(lengths)[:-1]
    cuts = _run_online(OnlineSceneTiller(min_length=4), feats) + [len(feats) - 1]
    assert min(_segment_lengths(cuts)) >= 4


def test_online_state_dict_roundtrip() -> None:
    rng = np.random.default_rng(9)
    lengths = [int(x) for x in rng.integers(5, 60, size=30)]
    feats = _scenes(rng, lengths)
    kwargs = dict(alpha=0.3, min_depth=0.05, min_length=3, max_length=40)
    full = _run_online(OnlineSceneTiller(**kwargs), feats)
    for split in (0, 1, 2, 57, len(feats) // 2):
        first = OnlineSceneTiller(**kwargs)
        head = _run_online(first, feats[:split])
        state = json.loads(json.dumps(first.state_dict()))
        resumed = OnlineSceneTiller()
        resumed.load_state_dict(state)
        assert head + _run_online(resumed, feats[split:], offset=split) == full
    tiller = OnlineSceneTiller(**kwargs)
    _run_online(tiller, feats[:100])
    tiller.reset()
    assert _run_online(tiller, feats) == full


# ---------------------------------------------------------------- the release's arithmetic ("feature_dtype")


def _literal_release_depths(features: torch.Tensor) -> torch.Tensor:
    """The release's depth loop written out: every climb walked one step at a time, in the features' dtype."""
    sims = torch.cosine_similarity(features[:-1], features[1:])
    depths = torch.zeros_like(sims)
    for i in range(len(sims)):
        lpeak = sims[i]
        for j in range(i - 1, -1, -1):
            if sims[j] < lpeak:
                break
            lpeak = sims[j]
        rpeak = sims[i]
        for j in range(i + 1, len(sims)):
            if sims[j] < rpeak:
                break
            rpeak = sims[j]
        depths[i] = lpeak + rpeak - 2 * sims[i]
    return depths


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_feature_dtype_depths_are_the_literal_loop_in_that_dtype(dtype) -> None:
    rng = np.random.default_rng(5)
    for _ in range(40):
        features = torch.from_numpy(_random_features(rng)).to(dtype)
        ours = release_depth_scores(features)
        assert ours.dtype == dtype
        assert torch.equal(ours, _literal_release_depths(features))


def test_feature_dtype_thresholds_in_that_dtype_and_cuts_like_float64_on_clear_scenes() -> None:
    rng = np.random.default_rng(6)
    lengths = [9, 14, 6, 11]
    features = torch.from_numpy(_scenes(rng, lengths)).half()
    depth = release_depth_scores(features)
    std, mean = torch.std_mean(depth)
    above = torch.nonzero(depth > mean + 0.5 * std).flatten().tolist()
    cuts = segment(features, alpha=0.5, precision="feature_dtype")
    assert cuts == sorted(set(above) | {len(features) - 1}) == _true_cuts(lengths)
    assert segment(features, k=3, precision="feature_dtype") == segment(features.float(), k=3) == cuts


def test_feature_dtype_edge_cases_and_bad_precision() -> None:
    rng = np.random.default_rng(7)
    one, two = torch.randn(1, 8).half(), torch.randn(2, 8).half()
    assert segment(one, precision="feature_dtype") == [0] and segment(one, k=3, precision="feature_dtype") == [0]
    assert segment(two, precision="feature_dtype") == [1]
    assert segment(torch.zeros(0, 3).half(), precision="feature_dtype") == []
    constant = torch.from_numpy(np.tile(rng.normal(size=(1, 16)), (20, 1))).half()
    assert segment(constant, precision="feature_dtype") == [19]
    with pytest.raises(ValueError, match="unknown precision"):
        segment(two, precision="float16")
    with pytest.raises(ValueError, match="floating point"):
        release_depth_scores(torch.ones(4, 3, dtype=torch.long))
