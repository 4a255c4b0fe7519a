"""The one video pipeline: a whole video fed as a stream gives what the offline path gives wherever they segment
alike; the stream's segmentation comes from the checkpoint's config."""

import json
from dataclasses import replace

import pytest
import torch

from llava.constants import VIDEO_TOKEN_INDEX
from llava.model.config import VideoLLaMBConfig
from llava.model.presets import tiny_config
from llava.model.stream import OPEN_SEGMENT_FACTOR, StreamSettings
from llava.model.videollamb import VideoLLaMBForCausalLM
from llava.video.scenetilling import segment, segments_from_boundaries

SCENE_LENGTHS = [4, 8, 4, 4, 8]  # at most OPEN_SEGMENT_FACTOR x frames_per_segment (4): a stream keeps every frame


def causal_model(tokenizer, **bridge) -> VideoLLaMBForCausalLM:
    """A tiny model whose tower is temporal_causal (streamed frames then have the offline features), with tower
    weights large enough for its CLS to see the colour changes; the same tower whatever the bridge."""
    models = []
    for overrides in ({}, bridge):
        config = tiny_config(vocab_size=len(tokenizer), **overrides)
        config.vision_config.temporal_causal = True
        torch.manual_seed(0)
        models.append(VideoLLaMBForCausalLM(config).eval())
    reference, model = models
    with torch.no_grad():
        for name, param in reference.video_tower.named_parameters():
            if param.dim() >= 2 and "position" not in name:
                param.mul_(20)
    model.video_tower.load_state_dict(reference.video_tower.state_dict())
    return model


def scene_video() -> torch.Tensor:
    """(28, 3, 32, 32): five flat-coloured scenes of SCENE_LENGTHS frames."""
    colours = torch.randn(len(SCENE_LENGTHS), 3, generator=torch.Generator().manual_seed(3)) * 1.5
    return torch.cat([c[None, :, None, None].expand(n, 3, 32, 32) for c, n in zip(colours, SCENE_LENGTHS)]).clone()


def offline_spans(model, video) -> list[tuple[int, int]]:
    cfg = model.config.bridge_config
    cls = model.encode_video_frames([video])[0].cls.float()
    return segments_from_boundaries(segment(cls, k=cfg.scenetilling_k, alpha=cfg.scenetilling_alpha,
                                            max_cuts=cfg.scenetilling_max_cuts))


def video_prompt(tokenizer) -> torch.Tensor:
    ids = tokenizer("USER: What was in the first scene? ASSISTANT:").input_ids
    return torch.tensor([ids[:1] + [VIDEO_TOKEN_INDEX] + ids[1:]])


@pytest.mark.parametrize("bridge", [{}, {"variant": "mem"}, {"llm_input": "memory_and_last_segment"},
                                    {"llm_input": "memories_and_last_segment"}],
                         ids=["last_segment", "memories", "memory_and_last_segment", "memories_and_last_segment"])
@pytest.mark.parametrize("push_size", [1, 5, 28], ids=["one-frame", "five-frames", "whole-video"])
def test_a_video_fed_as_a_stream_gives_the_offline_memory_tokens_and_answer(tokenizer, bridge, push_size):
    model, video = causal_model(tokenizer, **bridge), scene_video()
    stream = model.open_stream()
    readouts = []
    for start in range(0, len(video), push_size):
        times = [float(t) for t in range(start, min(start + push_size, len(video)))]
        readouts += [closed.readout for closed in stream.push(video[start : start + push_size], times)]
    readouts.append(stream.finish().readout)
    spans = [(int(a), int(b)) for a, b in stream.state.segments]
    assert spans == offline_spans(model, video) and len(spans) == len(SCENE_LENGTHS)  # they segment alike
    assert max(b - a + 1 for a, b in spans) <= OPEN_SEGMENT_FACTOR * model.config.bridge_config.frames_per_segment

    with torch.no_grad():
        segments = model.split_segments(model.encode_video_frames([video])[0])
        offline_state, _ = model.bridge.run_segments([segments])
        per_segment = model.encode_videos([video], every_segment=True)[0]
        (tokens,) = model.encode_videos([video])
    torch.testing.assert_close(stream.state.bridge.memory, offline_state.memory, atol=1e-5, rtol=1e-5)
    assert len(per_segment) == len(readouts)
    for offline, readout in zip(per_segment, readouts):  # what the LLM reads after every segment
        torch.testing.assert_close(stream.visual_tokens(readout), offline, atol=1e-5, rtol=1e-5)
    streamed = stream.visual_tokens(stream.current_readout())
    torch.testing.assert_close(streamed, tokens, atol=1e-5, rtol=1e-5)

    prompt, kwargs = video_prompt(tokenizer), dict(max_new_tokens=8, min_new_tokens=8, do_sample=False)
    answer = model.generate(prompt, videos=[video], **kwargs)
    assert len(set(answer[0].tolist())) > 1  # a real answer, not one token repeated
    assert torch.equal(model.generate(prompt, visual_features=[streamed], **kwargs), answer)


def test_a_stream_segments_as_its_config_says_unless_overridden(tokenizer):
    model = causal_model(tokenizer, stream_scenetilling_max_length=3, stream_max_cache_segments=2)
    still = scene_video()[:1].expand(10, -1, -1, -1)  # one still scene: only the max length cuts it
    stream = model.open_stream()
    stream.push(still, [float(t) for t in range(10)])
    stream.finish()
    assert stream.state.segments == [(0.0, 2.0), (3.0, 5.0), (6.0, 8.0), (9.0, 9.0)]
    assert len(stream.state.bridge.cache) == 2 and int(stream.state.bridge.num_segments[0]) == 4
    settings = replace(StreamSettings.from_config(model.config.bridge_config), max_segment_frames=5,
                       max_cache_segments=None)  # None: the whole-video cap (none)
    stream = model.open_stream(settings)
    stream.push(still, [float(t) for t in range(10)])
    stream.finish()
    assert stream.state.segments == [(0.0, 4.0), (5.0, 9.0)] and len(stream.state.bridge.cache) == 2
    assert stream.state.tiller["max_length"] == 5  # the segmenter's settings travel with a saved state


def test_an_open_segment_keeps_a_bounded_number_of_frames(tokenizer):
    model = causal_model(tokenizer, stream_scenetilling_min_depth=10.0)  # no cut ever
    stream = model.open_stream()
    limit = OPEN_SEGMENT_FACTOR * model.config.bridge_config.frames_per_segment
    for t in range(50):
        stream.push(scene_video()[t % 28 : t % 28 + 1], [float(t)])
        assert len(stream.state.open_tokens) <= limit
    assert stream.state.open_seen == 50 and stream.state.open_stride == 8 and not stream.state.segments
    assert stream.current_readout() is not None and not stream.state.segments  # read tentatively, nothing closed


def test_old_configs_without_the_stream_fields_load_with_the_earlier_defaults(tokenizer, tmp_path):
    raw = VideoLLaMBConfig(bridge_config={}).to_dict()
    for name in [n for n in raw["bridge_config"] if n.startswith("stream_")]:
        del raw["bridge_config"][name]
    raw["bridge_config"]["reset_memory_each_segment"] = False  # saved by earlier versions
    old = VideoLLaMBConfig.from_dict(json.loads(json.dumps(raw)))
    assert StreamSettings.from_config(old.bridge_config) == StreamSettings(
        alpha=0.5, min_depth=0.1, min_segment_frames=1, max_segment_frames=None, max_cache_segments=64)
