"""LanguageBind towers: CLIP parity, temporal windows per video, padding masks, state-dict names."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from transformers import CLIPVisionConfig, CLIPVisionModel

from llava.errors import ConfigError
from llava.model.config import VisionTowerConfig
from llava.model.languagebind import LanguageBindTower, plan_windows

TINY = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_channels=3,
    image_size=28,
    patch_size=14,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
)
WINDOW = 4


def tiny_config(select_layer: int = -2, **overrides) -> VisionTowerConfig:
    return VisionTowerConfig(**{**TINY, "temporal_window": WINDOW, "select_layer": select_layer, **overrides})


def randomize(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter (layernorms and biases included) non-trivial random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen) * 0.2
            is_norm_weight = "norm" in name and name.endswith("weight")
            param.copy_(1.0 + noise if is_norm_weight else noise)


def make_tower(temporal: bool, select_layer: int = -2, seed: int = 0) -> LanguageBindTower:
    tower = LanguageBindTower(tiny_config(select_layer), temporal=temporal).eval()
    randomize(tower, seed)
    return tower


def frames(n: int, seed: int) -> Tensor:
    return torch.randn(n, 3, 28, 28, generator=torch.Generator().manual_seed(seed))


def image_twin(video_tower: LanguageBindTower) -> LanguageBindTower:
    """An image tower with the video tower's spatial weights."""
    image = LanguageBindTower(video_tower.config, temporal=False).eval()
    result = image.load_state_dict(video_tower.state_dict(), strict=False)
    assert result.missing_keys == []
    assert result.unexpected_keys and all(".temporal_" in key for key in result.unexpected_keys)
    return image


# ---------------------------------------------------------------- CLIP parity


@pytest.mark.parametrize("select_layer", [-2, -1])
def test_image_tower_matches_transformers_clip(select_layer: int) -> None:
    clip = CLIPVisionModel(CLIPVisionConfig(**TINY)).eval()
    randomize(clip, seed=1)
    tower = LanguageBindTower(tiny_config(select_layer), temporal=False).eval()
    tower.load_state_dict({"vision_model." + k: v for k, v in clip.state_dict().items()}, strict=True)
    pixels = frames(3, seed=2)
    with torch.no_grad():
        expected = clip(pixel_values=pixels, output_hidden_states=True).hidden_states[select_layer]
        ours = tower.encode_images(pixels)
        assert torch.equal(tower(pixels), ours)
    assert ours.shape == (3, 5, 32)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_clip_state_dict_loads_into_vision_model_and_video_tower() -> None:
    clip_state = CLIPVisionModel(CLIPVisionConfig(**TINY)).state_dict()
    LanguageBindTower(tiny_config(), temporal=False).vision_model.load_state_dict(clip_state, strict=True)
    video = LanguageBindTower(tiny_config(), temporal=True)
    result = video.load_state_dict({"vision_model." + k: v for k, v in clip_state.items()}, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(".temporal_" in key for key in result.missing_keys)


def test_last_layer_is_skipped_for_select_layer_minus_two() -> None:
    tower = make_tower(temporal=True)
    with torch.no_grad():
        for param in tower.vision_model.encoder.layers[-1].parameters():
            param.fill_(float("nan"))
        out = tower.encode_videos([frames(4, seed=3)])[0]
    assert torch.isfinite(out).all()


def test_select_layer_zero_returns_embeddings() -> None:
    tower = make_tower(temporal=False, select_layer=0)
    pixels = frames(2, seed=4)
    with torch.no_grad():
        assert torch.equal(tower.encode_images(pixels), tower.vision_model.embed(pixels))


# ---------------------------------------------------------------- temporal path


def test_video_tower_without_temporal_contribution_equals_image_tower() -> None:
    video = make_tower(temporal=True)
    with torch.no_grad():
        for layer in video.vision_model.encoder.layers:
            layer.temporal_attn.out_proj.weight.zero_()
            layer.temporal_attn.out_proj.bias.zero_()
            layer.temporal_embedding.zero_()
    image = image_twin(video)
    videos = [frames(5, seed=5), frames(8, seed=6)]
    with torch.no_grad():
        ours = video.encode_videos(videos)
        expected = [image.encode_images(v) for v in videos]
    for got, want in zip(ours, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def changed_frames(tower: LanguageBindTower, videos: list[Tensor], video: int, frame: int) -> list[list[int]]:
    """Which output frames change when one input frame is perturbed."""
    perturbed = [v.clone() for v in videos]
    perturbed[video][frame] += 1.0
    with torch.no_grad():
        before, after = tower.encode_videos(videos), tower.encode_videos(perturbed)
    return [[t for t in range(len(b)) if not torch.allclose(b[t], a[t], atol=1e-6)] for b, a in zip(before, after)]


def test_frames_influence_only_their_own_window_of_their_own_video() -> None:
    tower = make_tower(temporal=True)
    videos = [frames(8, seed=7), frames(8, seed=8)]
    assert changed_frames(tower, videos, video=0, frame=1) == [[0, 1, 2, 3], []]
    assert changed_frames(tower, videos, video=1, frame=6) == [[], [4, 5, 6, 7]]


def test_partial_windows_stay_inside_their_video() -> None:
    tower = make_tower(temporal=True)
    videos = [frames(5, seed=9), frames(11, seed=10)]  # windows {0..3}{4} and {0..3}{4..7}{8..10}
    assert changed_frames(tower, videos, video=0, frame=4) == [[4], []]
    assert changed_frames(tower, videos, video=1, frame=0) == [[], [0, 1, 2, 3]]
    assert changed_frames(tower, videos, video=1, frame=9) == [[], [8, 9, 10]]


def test_batched_videos_equal_videos_encoded_alone() -> None:
    tower = make_tower(temporal=True)
    videos = [frames(5, seed=11), frames(11, seed=12), frames(4, seed=13)]
    with torch.no_grad():
        batched = tower.encode_videos(videos)
        alone = [tower.encode_videos([v])[0] for v in videos]
        lone_frame = tower.encode_videos([videos[0][4:]])[0]  # frame 4 of video 0 is alone in its window
    assert [tuple(b.shape) for b in batched] == [(5, 5, 32), (11, 5, 32), (4, 5, 32)]
    for got, want in zip(batched, alone):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(batched[0][4:], lone_frame, atol=1e-5, rtol=0)


def reference_attention(attn: torch.nn.Module, x: Tensor, heads: int) -> Tensor:
    """Textbook CLIP attention: softmax(q k^T / sqrt(hd)) v, written out."""
    b, n, d = x.shape
    hd = d // heads
    q = attn.q_proj(x).reshape(b, n, heads, hd).permute(0, 2, 1, 3) * hd**-0.5
    k = attn.k_proj(x).reshape(b, n, heads, hd).permute(0, 2, 1, 3)
    v = attn.v_proj(x).reshape(b, n, heads, hd).permute(0, 2, 1, 3)
    probs = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
    return attn.out_proj((probs @ v).permute(0, 2, 1, 3).reshape(b, n, d))


def reference_video_forward(tower: LanguageBindTower, videos: list[Tensor], window: int | None = None) -> Tensor:
    """The release's layer, literally: windows of W consecutive frames of the flattened B*T axis
    (W = `window` if given, to model a short last window)."""
    vm, cfg = tower.vision_model, tower.config
    heads, w = cfg.num_attention_heads, window or cfg.temporal_window
    x = torch.cat(videos)  # (B*T, 3, H, W)
    patches = vm.embeddings.patch_embedding(x).flatten(2).transpose(1, 2)
    cls = vm.embeddings.class_embedding.expand(x.shape[0], 1, -1)
    x = vm.pre_layrnorm(torch.cat([cls, patches], 1) + vm.embeddings.position_embedding.weight)
    bt, n, d = x.shape
    for layer in vm.encoder.layers[: cfg.num_layers_needed]:
        x = x.reshape(bt // w, w, n, d).permute(0, 2, 1, 3).reshape(bt // w * n, w, d)  # (b t) n d -> (b n) t d
        x = x + layer.temporal_embedding[:, :w]
        x = x + reference_attention(layer.temporal_attn, layer.temporal_layer_norm1(x), heads)
        x = x.reshape(bt // w, n, w, d).permute(0, 2, 1, 3).reshape(bt, n, d)  # (b n) t d -> (b t) n d
        x = x + reference_attention(layer.self_attn, layer.layer_norm1(x), heads)
        h = layer.mlp.fc1(layer.layer_norm2(x))
        x = x + layer.mlp.fc2(h * torch.sigmoid(1.702 * h))
    return x


@pytest.mark.parametrize("select_layer", [-2, -1])
def test_encode_videos_matches_reference_pseudo_code(select_layer: int) -> None:
    tower = make_tower(temporal=True, select_layer=select_layer)
    videos = [frames(8, seed=14), frames(4, seed=15)]
    with torch.no_grad():
        expected = reference_video_forward(tower, videos)
        ours = torch.cat(tower.encode_videos(videos))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_partial_window_equals_a_short_window_without_padding() -> None:
    """Masked padding is invisible: a last window of r < W real frames computes exactly a window of r frames."""
    tower = make_tower(temporal=True)
    videos = [frames(5, seed=19), frames(11, seed=20)]
    with torch.no_grad():
        ours = tower.encode_videos(videos)
        short_1 = reference_video_forward(tower, [videos[0][4:]], window=1)
        short_3 = reference_video_forward(tower, [videos[1][8:]], window=3)
        full = reference_video_forward(tower, [videos[1][:8]])
    torch.testing.assert_close(ours[0][4:], short_1, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours[1][8:], short_3, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours[1][:8], full, atol=1e-5, rtol=0)


def test_video_tower_encode_images_is_one_frame_videos() -> None:
    tower = make_tower(temporal=True)
    pixels = frames(3, seed=16)
    with torch.no_grad():
        expected = torch.cat(tower.encode_videos([p[None] for p in pixels]))
        torch.testing.assert_close(tower.encode_images(pixels), expected, atol=1e-6, rtol=0)


def test_image_tower_encode_videos_is_per_frame() -> None:
    tower = make_tower(temporal=False)
    videos = [frames(3, seed=17), frames(6, seed=18)]
    with torch.no_grad():
        ours = tower.encode_videos(videos)
        expected = tower.encode_images(torch.cat(videos))
    torch.testing.assert_close(torch.cat(ours), expected, atol=1e-6, rtol=0)


def test_plan_windows_pads_each_video() -> None:
    plan = plan_windows([5, 11, 4], 4, torch.device("cpu"))
    assert plan.num_windows == 2 + 3 + 1
    assert plan.slot_index.tolist() == [0, 1, 2, 3, 4] + list(range(8, 19)) + [20, 21, 22, 23]
    assert plan.key_mask.sum(1).tolist() == [4, 1, 4, 4, 3, 4]
    assert plan_windows([8, 4], 4, torch.device("cpu")).slot_index is None


def test_empty_inputs_and_bad_shapes() -> None:
    tower = make_tower(temporal=True)
    with torch.no_grad():
        assert tower.encode_videos([]) == []
        with pytest.raises(ValueError, match="video 1"):
            tower.encode_videos([frames(2, seed=0), torch.zeros(2, 3, 32, 32)])
        with pytest.raises(ValueError, match="pixel_values"):
            tower.encode_images(torch.zeros(3, 28, 28))
    with pytest.raises(ConfigError):
        LanguageBindTower(tiny_config(hidden_act="nope"), temporal=False)


# ---------------------------------------------------------------- state-dict names


def test_state_dict_names() -> None:
    video_keys = set(LanguageBindTower(tiny_config(), temporal=True).state_dict())
    image_keys = set(LanguageBindTower(tiny_config(), temporal=False).state_dict())
    prefix = "vision_model.encoder.layers.0."
    for name in ("temporal_embedding", "temporal_attn.q_proj.weight", "temporal_attn.out_proj.bias",
                 "temporal_layer_norm1.weight", "self_attn.q_proj.weight", "mlp.fc1.weight", "layer_norm2.bias"):
        assert prefix + name in video_keys
    for name in ("embeddings.class_embedding", "embeddings.patch_embedding.weight",
                 "embeddings.position_embedding.weight", "pre_layrnorm.weight", "post_layernorm.bias"):
        assert "vision_model." + name in image_keys and "vision_model." + name in video_keys
    assert "vision_model.embeddings.patch_embedding.bias" not in image_keys
    assert not any("temporal" in key for key in image_keys)
    assert not any("position_ids" in key for key in video_keys | image_keys)
    assert image_keys < video_keys
    assert LanguageBindTower(tiny_config(), temporal=True).vision_model.encoder.layers[0].temporal_embedding.shape == (
        1, WINDOW, 32)


def causal_tower_and_video() -> tuple[LanguageBindTower, torch.Tensor]:
    """A causal tiny video tower (window 4) and a random 10-frame video."""
    config = VisionTowerConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                               image_size=16, patch_size=8, temporal_window=4, temporal_causal=True)
    torch.manual_seed(0)
    return LanguageBindTower(config, temporal=True).eval(), torch.randn(10, 3, 16, 16)


def test_streaming_one_frame_at_a_time_equals_the_whole_video_for_a_causal_tower():
    tower, video = causal_tower_and_video()
    with torch.no_grad():
        (whole,) = tower.encode_videos([video])
        cache, streamed = None, []
        for frame in video:
            features, cache = tower.encode_stream_frame(frame, cache)
            streamed.append(features)
    torch.testing.assert_close(torch.stack(streamed), whole, atol=1e-5, rtol=1e-5)
    assert len(cache.past) == 2 and cache.past[0][0].shape[2] == 2  # frames 8 and 9 of the third window


@pytest.mark.parametrize("sizes", [[10], [3, 1, 5, 1], [4, 4, 2], [2, 7, 1], [1, 9]], ids=str)
def test_streaming_several_frames_per_call_equals_one_at_a_time(sizes):
    """Calls whose frames straddle window boundaries (window 4), or hold several whole windows (encoded
    together), give the same features and the same cache."""
    tower, video = causal_tower_and_video()
    with torch.no_grad():
        one_cache, one = None, []
        for frame in video:
            features, one_cache = tower.encode_stream_frame(frame, one_cache)
            one.append(features)
        cache, parts = None, []
        for chunk in video.split(sizes):
            features, cache = tower.encode_stream_frames(chunk, cache)
            assert features.shape[0] == chunk.shape[0]
            parts.append(features)
    torch.testing.assert_close(torch.cat(parts), torch.stack(one), atol=1e-5, rtol=1e-5)
    assert cache.position == one_cache.position == 2
    for batched, single in zip(cache.past, one_cache.past, strict=True):
        torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
