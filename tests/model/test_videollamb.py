"""VideoLLaMBForCausalLM on tiny random configs: media, splice, generate, save/load round-trip."""

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache, StaticCache

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX, VIDEO_TOKEN_INDEX
from llava.conversation import get_template
from llava.errors import ConfigError
from llava.mm_utils import tokenize_prompt
from llava.model.presets import tiny_config
from llava.model.videollamb import VideoLLaMBForCausalLM
from tests.model.conftest import random_video


def chat_ids(tokenizer, question: str, answer: str | None):
    conv = get_template("llava_v1")
    conv.append_message("USER", question)
    conv.append_message("ASSISTANT", answer)
    prompt, spans = conv.render()
    ids, labels = tokenize_prompt(prompt, tokenizer, spans if answer else None)
    return ids, labels


def batch(rows):
    """Right-pad (ids, labels) rows into tensors."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (ids, labs) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(ids)] = torch.tensor(labs)
        mask[i, : len(ids)] = 1
    return input_ids, mask, labels


def test_video_tokens_reach_the_llm_as_last_segment_tokens(tiny_model):
    video = random_video(10, seed=1)
    (tokens,) = tiny_model.encode_videos([video])
    frames = tiny_model.encode_video_frames([video])[0]
    last = tiny_model.split_segments(frames)[-1]
    assert tokens.shape == (last.shape[0], tiny_model.config.text_config.hidden_size)


def test_mixed_batch_loss_and_gradients(tiny_model, tokenizer):
    tiny_model.train()
    rows = [
        chat_ids(tokenizer, "<video>\nWhat was in the first scene?", "a red circle"),
        chat_ids(tokenizer, "<image>\nWhat is this?", "a blue square"),
        chat_ids(tokenizer, "How many scenes are there?", "three"),
    ]
    input_ids, mask, labels = batch(rows)
    out = tiny_model(
        input_ids=input_ids, attention_mask=mask, labels=labels,
        videos=[random_video(9, seed=2)], images=[torch.randn(3, 32, 32)],
    )
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert tiny_model.bridge.layer.selfattention.q_proj.weight.grad.abs().sum() > 0
    assert tiny_model.mm_projector[0].weight.grad.abs().sum() > 0


def test_media_count_mismatch_is_a_clear_error(tiny_model, tokenizer):
    ids, _ = chat_ids(tokenizer, "<video>\nWhat?", None)
    with pytest.raises(ValueError, match="1 <video> and 0 <image>"):
        tiny_model(input_ids=torch.tensor([ids]), videos=[])


def test_batched_generation_equals_one_by_one(tiny_model, tokenizer):
    prompts = [chat_ids(tokenizer, "<video>\nWhat was in the first scene?", None)[0],
               chat_ids(tokenizer, "<video>\nHow many scenes are there? Answer now.", None)[0]]
    videos = [random_video(7, seed=3), random_video(12, seed=4)]
    single = [tiny_model.generate(torch.tensor([p]), videos=[v], max_new_tokens=6, do_sample=False)[0]
              for p, v in zip(prompts, videos)]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])  # left padded
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    both = tiny_model.generate(ids, attention_mask=mask, videos=videos, max_new_tokens=6, do_sample=False)
    for i in range(2):
        n = len(single[i])
        assert torch.equal(both[i, :n], single[i])


def test_generation_from_a_cached_prompt_prefix_equals_reading_the_whole_prompt(tiny_model, tokenizer):
    """Rows with videos of different lengths: padding goes after the shared prefix, the answers do not change."""
    ids = chat_ids(tokenizer, "<video>\nWhat was in the first scene?", None)[0]
    prefix = tiny_model.cache_prompt_prefix(torch.tensor(ids[: ids.index(VIDEO_TOKEN_INDEX)]))
    prompts = torch.tensor([ids, ids])
    first, second = tiny_model.encode_videos([random_video(7, seed=3), random_video(12, seed=4)])
    media = [first, second[: len(first) // 2]]  # so that the first row is padded
    kwargs = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False)
    whole = tiny_model.generate(prompts, visual_features=media, **kwargs)
    cached = tiny_model.generate(prompts, visual_features=media, prompt_prefix=prefix, **kwargs)
    assert len(set(whole[0].tolist())) > 1 and not torch.equal(whole[0], whole[1])  # real, different answers
    assert torch.equal(cached, whole)
    assert prefix.cache.get_seq_length() == len(prefix.ids)  # generation worked on a copy
    other = torch.tensor([ids])
    other[0, 1] += 1  # another second token
    with pytest.raises(ValueError, match="start with the cached prompt prefix"):
        tiny_model.generate(other, visual_features=media[:1], prompt_prefix=prefix, **kwargs)
    with pytest.raises(ValueError, match="non-empty row of text token ids"):
        tiny_model.cache_prompt_prefix(torch.tensor(ids))


def test_static_kv_cache_is_sized_for_the_context_and_changes_no_token(tiny_model, tokenizer):
    prompt = torch.tensor([chat_ids(tokenizer, "<video>\nWhat was in the first scene?", None)[0]])
    kwargs = dict(videos=[random_video(9, seed=5)], max_new_tokens=8, min_new_tokens=8, do_sample=False,
                  return_dict_in_generate=True)
    dynamic = tiny_model.generate(prompt, **kwargs)
    tiny_model.use_static_kv_cache()
    static = tiny_model.generate(prompt, **kwargs)
    assert isinstance(dynamic.past_key_values, DynamicCache)
    assert isinstance(static.past_key_values, StaticCache)
    assert static.past_key_values.get_max_length() == tiny_model.config.text_config.max_position_embeddings
    assert len(set(dynamic.sequences[0].tolist())) > 1  # a real answer, not one token repeated
    assert torch.equal(static.sequences, dynamic.sequences)


def test_placeholders_consume_media_in_reading_order(tiny_model, tokenizer):
    ids, _ = chat_ids(tokenizer, "<image>\nand <video>\nwhich?", None)
    assert ids.index(IMAGE_TOKEN_INDEX) < ids.index(VIDEO_TOKEN_INDEX)
    image, video = torch.randn(3, 32, 32), random_video(6, seed=5)
    feats = tiny_model.encode_media(torch.tensor([ids]), None, videos=[video], images=[image])
    torch.testing.assert_close(feats[0], tiny_model.encode_images([image])[0])
    torch.testing.assert_close(feats[1], tiny_model.encode_videos([video])[0])


def scene_video(colours: torch.Tensor, frames_per_scene: int = 4) -> torch.Tensor:
    """Flat-coloured scenes, `frames_per_scene` frames each (aligned with the tiny tower's 4-frame windows)."""
    return colours.repeat_interleave(frames_per_scene, dim=0)[:, :, None, None].expand(-1, 3, 32, 32).clone()


def test_memory_ablation_removes_the_first_scene(tiny_model):
    tiny_model.config.bridge_config.scenetilling_k = 2  # exactly three segments: the three scenes
    colours = torch.tensor([[1.0, -1.0, 0.5], [-1.0, 1.0, -0.5], [0.2, 0.2, 1.5]])
    other = colours.clone()
    other[0] = torch.tensor([-1.5, -0.5, 1.0])  # only the first scene differs
    video, changed = scene_video(colours), scene_video(other)
    segments = [tiny_model.split_segments(f) for f in tiny_model.encode_video_frames([video, changed])]
    assert [len(s) for s in segments] == [3, 3]
    torch.testing.assert_close(segments[0][-1], segments[1][-1])  # the last scene reads the same
    with torch.no_grad():
        a, b = tiny_model.encode_videos([video, changed])
        assert not torch.allclose(a, b, atol=1e-4), "with memory, the first scene reaches the LLM's tokens"
        tiny_model.set_memory_ablation(True)
        a, b = tiny_model.encode_videos([video, changed])
    torch.testing.assert_close(a, b)


def test_save_and_load_round_trip_through_auto_classes(tiny_model, tmp_path, tokenizer):
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert AutoConfig.from_pretrained(tmp_path).model_type == "videollamb"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, VideoLLaMBForCausalLM)
    ids, _ = chat_ids(tokenizer, "<video>\nWhat was in the first scene?", None)
    video = random_video(8, seed=7)
    with torch.no_grad():
        a = tiny_model(input_ids=torch.tensor([ids]), videos=[video]).logits
        b = loaded(input_ids=torch.tensor([ids]), videos=[video]).logits
    torch.testing.assert_close(a, b)


def test_loss_at_every_segment_runs_one_copy_per_segment(tiny_model, tokenizer):
    tiny_model.config.bridge_config.scenetilling_k = 2
    ids, labels = chat_ids(tokenizer, "<video>\nWhat was in the first scene?", "a red circle")
    input_ids, mask, labels = batch([(ids, labels), chat_ids(tokenizer, "How many scenes?", "three")])
    video = scene_video(torch.tensor([[1.0, -1.0, 0.5], [-1.0, 1.0, -0.5], [0.2, 0.2, 1.5]]))
    rows, _, _, features = tiny_model.every_segment_copies(input_ids, mask, labels, [video], [])
    assert rows.shape[0] == 4 and len(features) == 3  # three segment copies of row 0, one text-only row
    torch.testing.assert_close(features[-1], tiny_model.encode_videos([video])[0])
    out = tiny_model(input_ids=input_ids, attention_mask=mask, labels=labels, videos=[video], loss_every_segment=True)
    assert torch.isfinite(out.loss) and out.logits.shape[0] == 4


def test_weights_missing_from_a_checkpoint_are_initialised_not_left_empty(tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file

    tiny_model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    dropped = [k for k in state if "temporal_embedding" in k or "class_embedding" in k]
    save_file({k: v for k, v in state.items() if k not in dropped}, str(tmp_path / "model.safetensors"))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    params = dict(loaded.named_parameters())
    for name in dropped:
        assert torch.isfinite(params[name]).all() and 0.005 < params[name].std() < 0.05, name


def test_frame_cls_token_joins_every_frame_for_the_bridge(tokenizer):
    torch.manual_seed(0)
    model = VideoLLaMBForCausalLM(tiny_config(vocab_size=len(tokenizer), frame_cls_token=True)).eval()
    video = random_video(10, seed=1)
    frames = model.encode_video_frames([video])[0]
    assert model.config.bridge_config.tokens_per_frame == 2 * 2 + 1
    assert frames.patches.shape[1] == model.config.bridge_config.tokens_per_frame
    assert torch.equal(frames.patches[:, 0], frames.cls)  # the CLS leads each frame's tokens
    without = VideoLLaMBForCausalLM(tiny_config(vocab_size=len(tokenizer))).eval()
    without.load_state_dict(model.state_dict())
    assert torch.equal(without.encode_video_frames([video])[0].patches, frames.patches[:, 1:])
    (tokens,) = model.encode_videos([video])  # the LLM reads the last segment's tokens, CLS included
    last = model.split_segments(frames)[-1]
    assert tokens.shape == (last.shape[0], model.config.text_config.hidden_size)
    assert last.shape[0] % 5 == 0


def test_memory_ablation_is_a_run_time_switch_never_saved(tiny_model, tmp_path):
    tiny_model.set_memory_ablation(True)
    assert tiny_model.memory_ablation and tiny_model.bridge.reset_memory_each_segment
    tiny_model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "reset_memory_each_segment" not in saved["bridge_config"]
    assert AutoModelForCausalLM.from_pretrained(tmp_path).memory_ablation is False
    saved["bridge_config"]["reset_memory_each_segment"] = True  # as saved after an ablation by earlier versions
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.memory_ablation is False and not hasattr(loaded.config.bridge_config, "reset_memory_each_segment")


def test_activations_come_from_the_config(tokenizer):
    model = VideoLLaMBForCausalLM(tiny_config(vocab_size=len(tokenizer), hidden_act="relu")).eval()
    assert model.bridge.layer.mlp[1].fn is F.relu and model.mm_projector[1].fn is F.gelu  # the defaults: GELU
    config = tiny_config(vocab_size=len(tokenizer))
    config.projector_hidden_act = "relu"
    model = VideoLLaMBForCausalLM(config).eval()
    (tokens,) = model.encode_videos([random_video(6, seed=2)])
    assert model.mm_projector[1].fn is F.relu and bool((tokens >= 0).all()) and bool((tokens == 0).any())
    config.projector_hidden_act = "swishy"
    with pytest.raises(ConfigError, match="unknown projector_hidden_act 'swishy'; valid: quick_gelu, gelu, relu"):
        VideoLLaMBForCausalLM(config)


def mem_model(tokenizer) -> VideoLLaMBForCausalLM:
    """A tiny "mem" variant as released (short videos read as images) with a non-zero segment position table (the
    released table is learned)."""
    torch.manual_seed(0)
    config = tiny_config(vocab_size=len(tokenizer), variant="mem", image_branch_max_frames=3)
    model = VideoLLaMBForCausalLM(config).eval()
    with torch.no_grad():
        model.bridge.segment_position_emb.weight.normal_()
    return model


def test_mem_variant_adds_the_segment_position_to_video_segments_only(tokenizer):
    model = mem_model(tokenizer)
    video, image = random_video(10, seed=1), torch.randn(3, 32, 32)
    with torch.no_grad():
        (video_tokens,), (image_tokens,) = model.encode_videos([video]), model.encode_images([image])
        model.bridge.segment_position_emb.weight.zero_()
        (video_unplaced,), (image_unplaced,) = model.encode_videos([video]), model.encode_images([image])
    assert not torch.allclose(video_tokens, video_unplaced, atol=1e-3)
    torch.testing.assert_close(image_tokens, image_unplaced, rtol=0, atol=0)
    assert image_tokens.shape[0] == model.config.bridge_config.num_memory_tokens


def test_mem_variant_reads_a_video_of_at_most_three_frames_as_images(tokenizer):
    """The release's `t <= 3` branch: every frame one bridge pass from the initial memory, no segment position,
    the LLM reads the retrieved memory of each (num_memory_tokens per frame)."""
    model = mem_model(tokenizer)
    memory = model.config.bridge_config.num_memory_tokens
    short, longer = random_video(3, seed=2), random_video(4, seed=2)
    with torch.no_grad():
        (tokens,) = model.encode_videos([short])
        frames = model.encode_video_frames([short])[0]
        per_frame = [model.project(o) for o in model.bridge_images(frames.patches)]
        segments = len(model.split_segments(model.encode_video_frames([longer])[0]))
        (longer_tokens,) = model.encode_videos([longer])
    assert model.reads_as_images(3) and not model.reads_as_images(4)
    assert tokens.shape[0] == 3 * memory and longer_tokens.shape[0] == segments * memory
    torch.testing.assert_close(tokens, torch.cat(per_frame), rtol=0, atol=0)
    with pytest.raises(ValueError, match="read as images"):
        model.trace_video(short)
    (every,) = model.encode_videos([short], every_segment=True)
    assert len(every) == 1 and torch.equal(every[0], tokens)
    assert not VideoLLaMBForCausalLM(tiny_config(vocab_size=len(tokenizer), variant="mem")).reads_as_images(1)


def test_trace_video_follows_the_path_encode_videos_takes(tiny_model):
    video = random_video(10, seed=3)
    trace = tiny_model.trace_video(video)
    (tokens,) = tiny_model.encode_videos([video])
    torch.testing.assert_close(trace.projected[-1], tokens)
    assert trace.boundaries[-1] == 9 and len(trace.steps) == len(trace.projected) == len(trace.boundaries)
    assert [frames[-1] for frames in trace.segment_frames] == trace.boundaries
    assert trace.tower_hidden.shape[0] == 10


def test_segment_positions_added_to_a_checkpoint_without_them_start_at_zero(tokenizer, tmp_path):
    """A checkpoint saved without segment positions, loaded with them switched on in its config (to fine-tune
    them): the new table starts at zero, as a fresh model's does, so the model reads a video as before."""
    torch.manual_seed(0)
    model = VideoLLaMBForCausalLM(tiny_config(vocab_size=len(tokenizer))).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["bridge_config"]["segment_position_embeddings"] = True
    (tmp_path / "config.json").write_text(json.dumps(config))
    extended = VideoLLaMBForCausalLM.from_pretrained(tmp_path).eval()
    assert int(torch.count_nonzero(extended.bridge.segment_position_emb.weight)) == 0
    video = random_video(10, seed=3)
    with torch.no_grad():
        (before,), (after,) = model.encode_videos([video]), extended.encode_videos([video])
    torch.testing.assert_close(after, before, rtol=0, atol=0)
