"""The Memory Bridge against a direct, literal implementation of the reference equations."""

import math

import pytest
import torch

from llava.model.bridge import MemoryBridge
from llava.model.config import BridgeConfig

D, HEADS, MEM = 16, 4, 3


def make_bridge(variant: str = "default", **overrides) -> MemoryBridge:
    config = BridgeConfig(
        hidden_size=D, num_attention_heads=HEADS, intermediate_size=32, num_memory_tokens=MEM, variant=variant, **overrides
    )
    torch.manual_seed(0)
    bridge = MemoryBridge(config)
    with torch.no_grad():  # non-trivial initial memory and segment positions, so that they matter in the comparison
        bridge.read_memory_emb.normal_()
        if bridge.segment_position_emb is not None:
            bridge.segment_position_emb.weight.normal_()
    return bridge.eval()


def direct_attention(block, query, kv):
    """softmax(QK^T / sqrt(d_h)) V per head, then LN(query + Dense(.)), written out by hand."""
    heads, d = HEADS, query.shape[-1]
    dh = d // heads
    q = (query @ block.q_proj.weight.T + block.q_proj.bias).view(-1, heads, dh).transpose(0, 1)
    k = (kv @ block.k_proj.weight.T + block.k_proj.bias).view(-1, heads, dh).transpose(0, 1)
    v = (kv @ block.v_proj.weight.T + block.v_proj.bias).view(-1, heads, dh).transpose(0, 1)
    weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(dh), dim=-1)
    attended = (weights @ v).transpose(0, 1).reshape(-1, d)
    res = block.residual
    return torch.nn.functional.layer_norm(
        query + attended @ res.dense.weight.T + res.dense.bias, (d,), res.layernorm.weight, res.layernorm.bias, 1e-12
    )


def direct_layer(layer, x):
    x = direct_attention(layer.selfattention, x, x)
    fc = layer.mlp[0]
    h = torch.nn.functional.gelu(x @ fc.weight.T + fc.bias)
    res = layer.residual
    return torch.nn.functional.layer_norm(
        x + h @ res.dense.weight.T + res.dense.bias, (D,), res.layernorm.weight, res.layernorm.bias, 1e-12
    )


def direct_video(bridge: MemoryBridge, segments: list[torch.Tensor], positions: bool = True) -> torch.Tensor:
    """The reference recurrence for one video; returns what the LLM reads. `positions` False: no segment position
    (the mem variant's images)."""
    mem_variant = bridge.config.variant == "mem"
    memory, cache, memories, hidden = bridge.read_memory_emb, [], [], None
    for s, x in enumerate(segments):
        if bridge.config.has_segment_positions and positions:
            x = x + bridge.segment_position_emb.weight[s]
        y = direct_layer(bridge.layer, torch.cat([memory, x]))
        memory_tilde, hidden = y[:MEM], y[MEM:]
        cache.append(hidden if mem_variant else memory_tilde)
        memory = direct_attention(bridge.retriever.crossattention, memory_tilde, torch.cat(cache))
        memories.append(memory)
    mode = bridge.config.readout_mode
    if mode == "memory_and_last_segment":
        return torch.cat([memory, hidden])
    if mode == "memories_and_last_segment":
        return torch.cat([*memories, hidden])
    return torch.cat(memories) if mode == "memories" else hidden


def random_video(num_segments: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(int(torch.randint(2, 7, (1,), generator=g)), D, generator=g) for _ in range(num_segments)]


@pytest.mark.parametrize("variant", ["default", "mem"])
def test_single_video_matches_direct_equations(variant):
    bridge = make_bridge(variant)
    video = random_video(4, seed=1)
    _, (ours,) = bridge.run_segments([video])
    expected = direct_video(bridge, video)
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_default_variant_with_segment_positions_adds_them_and_keeps_its_memory_cache():
    bridge = make_bridge("default", segment_position_embeddings=True, llm_input="memory_and_last_segment")
    assert bridge.segment_position_emb is not None and make_bridge("default").segment_position_emb is None
    video = random_video(4, seed=3)
    _, (ours,) = bridge.run_segments([video])
    torch.testing.assert_close(ours, direct_video(bridge, video), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        bridge.segment_position_emb.weight.zero_()  # the start of training: no position, the default variant's output
    _, (unpositioned,) = bridge.run_segments([video])
    assert not torch.allclose(ours, unpositioned, atol=1e-3)
    plain = make_bridge("default", llm_input="memory_and_last_segment")
    plain.load_state_dict({k: v for k, v in bridge.state_dict().items() if not k.startswith("segment_position_emb")})
    torch.testing.assert_close(unpositioned, plain.run_segments([video])[1][0])


@pytest.mark.parametrize("variant", ["default", "mem"])
def test_batch_with_different_segment_counts_equals_one_by_one(variant):
    bridge = make_bridge(variant)
    videos = [random_video(n, seed=10 + n) for n in (1, 4, 2)]
    _, batched = bridge.run_segments(videos)
    for video, out in zip(videos, batched):
        torch.testing.assert_close(out, direct_video(bridge, video), atol=1e-5, rtol=1e-5)
    if variant == "mem":
        assert [o.shape[0] for o in batched] == [MEM * 1, MEM * 4, MEM * 2]


def test_mem_variant_without_segment_positions_matches_direct_equations():
    bridge = make_bridge("mem")
    videos = [random_video(n, seed=20 + n) for n in (1, 3)]
    _, ours = bridge.run_segments(videos, segment_positions=False)
    _, placed = bridge.run_segments(videos)
    for video, out, with_positions in zip(videos, ours, placed, strict=True):
        torch.testing.assert_close(out, direct_video(bridge, video, positions=False), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(out, with_positions, atol=1e-3)


@pytest.mark.parametrize("variant", ["default", "mem"])
def test_advance_keeps_the_step_intermediates(variant):
    """advance: the tokens the layer read (with the segment position), M~ before retrieval and H~."""
    bridge = make_bridge(variant)
    video = random_video(2, seed=8)
    state = bridge.init_state(1)
    for s, segment_tokens in enumerate(video):
        taken = bridge.advance(state, segment_tokens[None])
        expected_inputs = segment_tokens + (bridge.segment_position_emb.weight[s] if variant == "mem" else 0)
        torch.testing.assert_close(taken.inputs[0], expected_inputs)
        layer_out = direct_layer(bridge.layer, torch.cat([state.memory[0], expected_inputs]))
        torch.testing.assert_close(taken.memory_tilde[0], layer_out[:MEM], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(taken.hidden[0], layer_out[MEM:], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(taken.state.memory, taken.memory_tilde, atol=1e-3), "retrieval changes M~"
        state = taken.state


def test_memory_carries_the_past_and_the_ablation_removes_it():
    bridge = make_bridge("default")
    video = random_video(3, seed=3)
    other_start = [torch.randn_like(video[0])] + video[1:]
    _, (a,) = bridge.run_segments([video])
    _, (b,) = bridge.run_segments([other_start])
    assert not torch.allclose(a, b, atol=1e-4), "the first segment must influence the last output"
    bridge.reset_memory_each_segment = True
    _, (a,) = bridge.run_segments([video])
    _, (b,) = bridge.run_segments([other_start])
    torch.testing.assert_close(a, b)


def test_cache_cap_keeps_the_last_blocks():
    bridge = make_bridge("default", max_cache_segments=2)
    state, _ = bridge.run_segments([random_video(5, seed=4)])
    assert len(state.cache) == 2 and int(state.num_segments[0]) == 5


def test_step_api_matches_run_segments():
    bridge = make_bridge("default")
    video = random_video(3, seed=5)
    state = bridge.init_state(1)
    for segment_tokens in video:
        state, hidden = bridge.step(state, segment_tokens[None])
    _, (whole,) = bridge.run_segments([video])
    torch.testing.assert_close(hidden[0], whole)


def test_gradients_reach_the_first_segment_and_the_initial_memory():
    bridge = make_bridge("default").train()
    video = [s.requires_grad_() for s in random_video(3, seed=6)]
    _, (out,) = bridge.run_segments([video])
    (out * torch.randn_like(out)).sum().backward()  # a plain sum of a layernorm output has no gradient
    assert video[0].grad is not None and video[0].grad.abs().sum() > 0
    assert bridge.read_memory_emb.grad.abs().sum() > 0


def test_memory_and_last_segment_readout_matches_direct_equations_and_ablation_removes_the_past():
    bridge = make_bridge("default", llm_input="memory_and_last_segment", memory_init_std=0.5)
    memory_rows = bridge.read_memory_emb
    assert not torch.allclose(memory_rows[0], memory_rows[1]), "a random initial memory breaks the slots' symmetry"
    video = random_video(3, seed=7)
    _, (ours,) = bridge.run_segments([video])
    torch.testing.assert_close(ours, direct_video(bridge, video), atol=1e-5, rtol=1e-5)
    assert ours.shape[0] == MEM + video[-1].shape[0]
    other_start = [torch.randn_like(video[0])] + video[1:]
    bridge.reset_memory_each_segment = True
    _, (a,) = bridge.run_segments([video])
    _, (b,) = bridge.run_segments([other_start])
    torch.testing.assert_close(a, b)


def test_memories_and_last_segment_readout_matches_direct_equations_in_a_batch():
    """[M_1; ...; M_S; H~_S]: every segment's memory (counted and ordered by the LLM) and the last segment's tokens
    (what it shows now), for videos of different segment counts batched together."""
    bridge = make_bridge("default", segment_position_embeddings=True, llm_input="memories_and_last_segment")
    videos = [random_video(n, seed=30 + n) for n in (3, 1, 4)]
    _, batched = bridge.run_segments(videos)
    for video, out in zip(videos, batched, strict=True):
        assert out.shape[0] == MEM * len(video) + video[-1].shape[0]
        torch.testing.assert_close(out, direct_video(bridge, video), atol=1e-5, rtol=1e-5)
