"""FrameTokenCache and VideoLLaMBForCausalLM.attach_frame_token_cache: a hit gives exactly the tensors a fresh tower
pass gives, the budget holds (least recently used dropped first), only segmented videos are cached, and a tower that
is not frozen is refused."""

import pytest
import torch

from llava.budget_cache import MB
from llava.errors import ConfigError
from llava.model.frame_cache import FrameTokenCache, frames_bytes, pixels_key
from llava.model.presets import tiny_config
from llava.model.stream import FrameTokens
from llava.model.videollamb import VideoLLaMBForCausalLM
from tests.model.conftest import random_video


def frozen(model: VideoLLaMBForCausalLM) -> VideoLLaMBForCausalLM:
    model.video_tower.requires_grad_(False)
    model.video_tower.eval()
    return model


def cached(model: VideoLLaMBForCausalLM, budget_mb: float = 1.0) -> FrameTokenCache:
    cache = FrameTokenCache(budget_mb)
    frozen(model).attach_frame_token_cache(cache)
    return cache


def fake_frames(frames: int, value: float = 0.0) -> FrameTokens:
    return FrameTokens(cls=torch.full((frames, 8), value), patches=torch.full((frames, 5, 8), value))


def assert_same(a: FrameTokens, b: FrameTokens) -> None:
    assert torch.equal(a.cls, b.cls) and torch.equal(a.patches, b.patches)


def test_keys_tell_apart_one_changed_value_a_shape_and_a_dtype():
    video = random_video(6, seed=0)
    changed = video.clone()
    changed[3, 1, 2, 2] += 1e-6
    keys = {pixels_key(v) for v in (video, changed, video.reshape(3, 2, 3, 32, 32), video.double())}
    assert len(keys) == 4
    assert pixels_key(video) == pixels_key(video.clone())
    assert pixels_key(video[:, :, :, ::2]) == pixels_key(video[:, :, :, ::2].contiguous())  # values, not strides


def test_the_budget_holds_the_least_recently_used_goes_first_and_too_large_is_not_kept():
    one = frames_bytes(fake_frames(4))  # 4 x 6 x 8 float32
    cache = FrameTokenCache(budget_mb=2.5 * one / MB)  # room for two videos of 4 frames
    videos = [torch.full((4, 3, 2, 2), float(i)) for i in range(4)]
    calls = []

    def encode(pixels):
        calls.append(int(pixels[0, 0, 0, 0]))
        return fake_frames(len(pixels), float(pixels[0, 0, 0, 0]))

    for i in (0, 1, 0, 2, 1, 0):  # 2 evicts 1 (0 was used since); then 1 evicts 0, 0 evicts 2
        cache.tokens(videos[i], encode)
    assert calls == [0, 1, 2, 1, 0]
    assert (cache.hits, cache.misses, len(cache)) == (1, 5, 2)
    assert cache.held_bytes == 2 * one <= cache.budget_bytes
    big = torch.full((12, 3, 2, 2), 9.0)
    assert cache.tokens(big, encode).cls.shape == (12, 8)  # returned, not kept: larger than the whole budget
    assert len(cache) == 2 and cache.held_bytes == 2 * one
    with pytest.raises(ValueError, match="at least 0 MB"):
        FrameTokenCache(-1)


def test_a_hit_is_a_copy_that_callers_cannot_change():
    cache = FrameTokenCache(budget_mb=1)
    video = torch.zeros(4, 3, 2, 2)
    first = cache.tokens(video, lambda pixels: fake_frames(4, 1.0))
    first.patches.add_(5)
    hit = cache.tokens(video, lambda pixels: pytest.fail("encoded again"))
    hit.cls.add_(5)
    assert_same(cache.tokens(video, lambda pixels: pytest.fail("encoded again")), fake_frames(4, 1.0))


def test_hits_are_exactly_a_fresh_tower_pass_of_the_video(tiny_model):
    videos = [random_video(t, seed=t) for t in (6, 9, 5)]
    fresh = [tiny_model.tower_frame_tokens([v])[0] for v in videos]  # each video alone through the tower
    batched = tiny_model.tower_frame_tokens(videos)  # what training without the cache computes
    cache = cached(tiny_model)
    with torch.no_grad():
        missed = tiny_model.encode_video_frames(videos)
        hit = tiny_model.encode_video_frames(videos[::-1])[::-1]
    assert (cache.hits, cache.misses, len(cache)) == (3, 3, 3)
    for a, b, c, d in zip(fresh, missed, hit, batched, strict=True):
        assert_same(a, b)
        assert_same(a, c)
        # the tower is batch invariant here (measured: equal bit for bit, also with the demo model's tower and
        # 24-320-frame videos); the tolerance only allows for other CPU kernels
        torch.testing.assert_close(a.patches, d.patches, rtol=1e-6, atol=1e-6)
    assert cache.held_bytes == sum(frames_bytes(f) for f in fresh)  # compact copies, not the tower's views


def test_videos_read_as_images_and_images_bypass_the_cache(tokenizer):
    torch.manual_seed(0)
    model = VideoLLaMBForCausalLM(tiny_config(vocab_size=len(tokenizer), image_branch_max_frames=4))
    cache = cached(model)
    short, long = random_video(4, seed=1), random_video(8, seed=2)
    with torch.no_grad():
        frames = model.encode_video_frames([short, long])
        model.encode_images([short[0]])
    assert (cache.hits, cache.misses, len(cache)) == (0, 1, 1)
    assert_same(frames[0], model.tower_frame_tokens([short])[0])


def test_a_tower_that_is_not_frozen_is_refused(tiny_model):
    with pytest.raises(ConfigError, match="parameters require grad"):
        tiny_model.attach_frame_token_cache(FrameTokenCache(1))
    tiny_model.video_tower.requires_grad_(False)
    tiny_model.video_tower.train()
    with pytest.raises(ConfigError, match="training mode"):
        tiny_model.attach_frame_token_cache(FrameTokenCache(1))
    torch.manual_seed(0)
    dropout = VideoLLaMBForCausalLM(tiny_config(vocab_size=320))
    dropout.video_tower.config.attention_dropout = 0.1
    with pytest.raises(ConfigError, match="attention dropout"):
        frozen(dropout).attach_frame_token_cache(FrameTokenCache(1))
    assert tiny_model.frame_token_cache is None and dropout.frame_token_cache is None


def test_train_mode_leaves_a_cached_tower_in_eval_and_every_use_checks_again(tiny_model):
    cached(tiny_model)
    tiny_model.train()
    assert tiny_model.training and tiny_model.bridge.training and not tiny_model.video_tower.training
    tiny_model.video_tower.requires_grad_(True)  # unfrozen after attaching: the cache would go stale
    with pytest.raises(ConfigError, match="parameters require grad"):
        tiny_model.encode_video_frames([random_video(6, seed=0)])
    tiny_model.attach_frame_token_cache(None)
    tiny_model.train()
    assert tiny_model.video_tower.training
    assert len(tiny_model.encode_video_frames([random_video(6, seed=0)])) == 1
