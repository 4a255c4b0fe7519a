"""What SceneTilling compares per frame (`BridgeConfig.scenetilling_feature`): the CLS feature, as the release does,
or the tokens the bridge reads, in whole videos and in streams alike."""

import pytest
import torch

from llava.errors import ConfigError
from llava.model.config import BridgeConfig
from llava.model.stream import FrameTokens, offline_boundaries
from llava.video.scenetilling import segments_from_boundaries
from tests.model.test_stream import causal_model, scene_video


def frames_whose_cls_never_changes() -> FrameTokens:
    """12 frames in two scenes of 6 that differ in their pooled tokens only (the CLS is one constant vector)."""
    generator = torch.Generator().manual_seed(0)
    cls = torch.randn(1, 8, generator=generator).expand(12, 8)
    scenes = torch.randn(2, 4, 8, generator=generator)
    patches = scenes.repeat_interleave(6, dim=0) + 0.01 * torch.randn(12, 4, 8, generator=generator)
    return FrameTokens(cls=cls, patches=patches)


def test_the_default_is_the_release_cls_and_an_unknown_feature_is_refused():
    assert BridgeConfig().scenetilling_feature == "cls"
    with pytest.raises(ConfigError, match="scenetilling_feature 'pixels'"):
        BridgeConfig(scenetilling_feature="pixels")


def test_tokens_find_the_scene_change_the_cls_cannot_see():
    frames = frames_whose_cls_never_changes()
    assert frames.scene_features("tokens").shape == (12, 32)
    assert offline_boundaries(frames, BridgeConfig(scenetilling_k=1, scenetilling_feature="tokens")) == [5, 11]
    config = BridgeConfig(scenetilling_k=None, scenetilling_alpha=0.0)
    assert offline_boundaries(frames, config) == [11]  # constant similarities: nothing stands out
    tokens_config = BridgeConfig(scenetilling_k=None, scenetilling_alpha=0.0, scenetilling_feature="tokens")
    assert offline_boundaries(frames, tokens_config) == [5, 11]


def test_a_stream_compares_the_same_feature_and_segments_as_the_whole_video(tokenizer):
    model, video = causal_model(tokenizer, scenetilling_feature="tokens"), scene_video()
    stream = model.open_stream()
    stream.push(video, [float(t) for t in range(len(video))])
    per_frame = model.config.bridge_config.tokens_per_frame * model.config.vision_config.hidden_size
    assert len(stream.state.tiller["prev_feature"]) == per_frame  # the tokens' vector, not the CLS
    stream.finish()
    with torch.no_grad():
        frames = model.encode_video_frames([video])[0]
    offline = segments_from_boundaries(offline_boundaries(frames, model.config.bridge_config))
    assert [(int(a), int(b)) for a, b in stream.state.segments] == offline and len(offline) > 1
