"""StreamingSession: each frame encoded once, each segment bridged once, flat state, save and resume."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from llava.errors import LlavaError
from llava.model.builder import load_pretrained_model
from llava.model.stream import StreamSettings
from llava.serve.streaming_session import StreamingSession
from llava.video.decode import open_video

ROOT = Path(__file__).resolve().parents[2]


def sharpen(model):
    """A random tower's CLS barely depends on the frame; larger weights make scene changes visible to it."""
    with torch.no_grad():
        for name, param in model.video_tower.named_parameters():
            if param.dim() >= 2 and "position" not in name:
                param.mul_(20)
    return model


def make_session(checkpoint) -> StreamingSession:
    """The checkpoint's stream settings, with the bridge cache capped at 3 segments (a run-time override)."""
    tokenizer, model, processor, _ = load_pretrained_model(checkpoint, device="cpu")
    settings = replace(StreamSettings.from_config(model.config.bridge_config), max_cache_segments=3)
    return StreamingSession(sharpen(model), tokenizer, processor, stream_settings=settings)


@pytest.fixture
def session(tiny_checkpoint):
    return make_session(tiny_checkpoint)


def flat_scenes(num_scenes: int, frames_per_scene: int = 4, seed: int = 0) -> list[tuple[float, np.ndarray]]:
    """(time, frame) pairs at 4 fps of flat-coloured scenes: the cut times are exact."""
    palette = np.array([(255, 0, 0), (0, 0, 255), (255, 255, 0), (0, 160, 0), (255, 255, 255), (160, 0, 160)])
    colours = np.roll(palette, seed, axis=0)[np.arange(num_scenes) % len(palette)].astype(np.uint8)
    count = num_scenes * frames_per_scene
    return [(i / 4, np.broadcast_to(colours[i // frames_per_scene], (32, 32, 3)).copy()) for i in range(count)]


def stream_frames(video, fps=4.0):
    with open_video(video) as reader:
        return list(reader.iter_frames(fps=fps))


def test_each_frame_encoded_once_and_each_segment_bridged_once(session, tiny_video, monkeypatch):
    calls = {"frames": 0, "steps": 0}
    encode, advance = session.model.video_tower.encode_stream_frames, session.model.bridge.advance

    def counting_encode(pixels, *args, **kwargs):
        calls["frames"] += pixels.shape[0]
        return encode(pixels, *args, **kwargs)

    def counting_advance(*args, **kwargs):
        calls["steps"] += 1
        return advance(*args, **kwargs)

    monkeypatch.setattr(session.model.video_tower, "encode_stream_frames", counting_encode)
    monkeypatch.setattr(session.model.bridge, "advance", counting_advance)
    frames = flat_scenes(4) + stream_frames(tiny_video)
    for t, frame in frames:
        session.push(frame, t)
    session.finish()
    assert calls["frames"] == len(frames)
    assert calls["steps"] == len(session.state.segments) >= 2


def test_several_frames_per_push_give_what_one_at_a_time_gives(tiny_checkpoint, tiny_video):
    frames = flat_scenes(5) + [(t + 5.0, f) for t, f in stream_frames(tiny_video)]
    single, batched = make_session(tiny_checkpoint), make_session(tiny_checkpoint)
    one_by_one = [single.push(frame, t) for t, frame in frames]
    per_frame, start = [], 0
    for size in [3, 1, 6, 2, 5] * len(frames):  # calls that straddle the tower's windows and the scene cuts
        chunk = frames[start : start + size]
        if not chunk:
            break
        per_frame += batched.push_frames(np.stack([f for _, f in chunk]), [t for t, _ in chunk])
        start += size
    assert len(per_frame) == len(frames)
    assert [[(e.time, e.text) for e in events] for events in per_frame] == \
        [[(e.time, e.text) for e in events] for events in one_by_one]
    assert sum(map(len, one_by_one)) >= 3  # several captions along the way
    assert batched.state.segments == single.state.segments and batched.state.last_time == single.state.last_time
    torch.testing.assert_close(batched.state.readout, single.state.readout, atol=1e-5, rtol=1e-5)
    assert batched.finish()[0].text == single.finish()[0].text
    with pytest.raises(ValueError, match="2 frames but 1 times"):
        batched.push_frames(np.stack([frames[0][1]] * 2), [99.0])
    assert batched.push_frames(np.zeros((0, 32, 32, 3), np.uint8), []) == []


def test_timed_frames_stamp_each_caption_with_the_frame_that_showed_the_scene_had_ended(tiny_checkpoint):
    frames = flat_scenes(4)
    single, timed = make_session(tiny_checkpoint), make_session(tiny_checkpoint)
    expected = [(t, e.text) for t, frame in frames for e in single.push(frame, t)]
    events = timed.push_timed_frames(frames[:5]) + timed.push_timed_frames(frames[5:]) + timed.push_timed_frames([])
    assert [(e.time, e.text) for e in events] == expected and len(expected) >= 2
    assert all(t * 4 % 4 == 0 for t, _ in expected)  # the first frame of each new scene (4 frames a scene at 4 fps)


def test_timed_frames_may_change_size_midway(tiny_checkpoint):
    """A stream that changes resolution: frames of several sizes in one call (each is resized by the processor)."""
    frames = [(t, frame if i % 3 else np.ascontiguousarray(np.repeat(frame, 2, axis=0)))  # every third 64x32
              for i, (t, frame) in enumerate(flat_scenes(4))]
    single, timed = make_session(tiny_checkpoint), make_session(tiny_checkpoint)
    expected = [(t, e.text) for t, frame in frames for e in single.push(frame, t)]
    assert [(e.time, e.text) for e in timed.push_timed_frames(frames)] == expected and expected
    assert timed.state.segments == single.state.segments


def test_segments_close_at_the_colour_changes(session):
    for t, frame in flat_scenes(6):
        session.push(frame, t)
    session.finish()
    starts = [start for start, _ in session.state.segments]
    assert starts[0] == 0.0 and set(starts) <= {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}  # cuts only where the colour changes
    assert len(starts) >= 5  # and (with random tower weights) nearly all of them are found


def test_state_stays_flat_over_a_long_stream(session):
    sizes = []
    for t, frame in flat_scenes(40):
        session.push(frame, t)
        sizes.append(len(session.state.bridge.cache) + len(session.state.open_tokens))
    assert len(session.state.segments) > 10
    assert len(session.state.bridge.cache) == 3  # the configured cap
    assert max(sizes) <= 3 + 2 * session.model.config.bridge_config.frames_per_segment


def test_save_and_resume_gives_the_same_captions_and_answers(session, tiny_checkpoint, tiny_video, tmp_path):
    """Saved in the middle of a tower window: the file holds that window's frames, from which the tower's cache
    is rebuilt, not the cache itself."""
    frames = flat_scenes(5) + stream_frames(tiny_video)
    window = session.model.config.vision_config.temporal_window
    half = len(frames) // 2 // window * window + window // 2
    uninterrupted = [str(e) for t, f in frames for e in session.push(f, t)] + [str(e) for e in session.finish()]
    answer = session.ask("What was in the first scene?")

    first = make_session(tiny_checkpoint)
    events = [str(e) for t, f in frames[:half] for e in first.push(f, t)]
    first.save_state(tmp_path / "stream.pt")
    saved = torch.load(tmp_path / "stream.pt", weights_only=True)
    assert set(saved) == {"bridge", "tiller", "tower_window", "open", "last_time", "readout", "segments",
                          "last_caption", "last_caption_time"}  # the layout of every earlier state file
    assert "tower_cache" not in saved and saved["tower_window"].shape[:2] == (window // 2, 3)
    second = make_session(tiny_checkpoint)
    second.load_state(tmp_path / "stream.pt")
    assert second.state.tower_cache.position == first.state.tower_cache.position == window // 2
    for rebuilt, kept in zip(second.state.tower_cache.past, first.state.tower_cache.past, strict=True):
        torch.testing.assert_close(rebuilt, kept, atol=1e-5, rtol=1e-5)
    events += [str(e) for t, f in frames[half:] for e in second.push(f, t)] + [str(e) for e in second.finish()]
    assert events == uninterrupted
    assert second.ask("What was in the first scene?") == answer


def test_questions_before_any_frame_and_bad_state_files_are_clear_errors(session, tmp_path):
    with pytest.raises(LlavaError, match="no frames"):
        session.ask("What is happening?")
    (tmp_path / "bad.pt").write_bytes(b"not a state")
    with pytest.raises(LlavaError, match="not a saved stream state"):
        session.load_state(tmp_path / "bad.pt")
    session.push(np.zeros((32, 32, 3), np.uint8), 0.0)
    session.save_state(tmp_path / "good.pt")
    older = torch.load(tmp_path / "good.pt", weights_only=True)
    older["tower_cache"] = older.pop("tower_window")  # as saved before the window's frames replaced the cache
    torch.save(older, tmp_path / "older.pt")
    with pytest.raises(LlavaError, match="not a saved stream state of this version \\(no 'tower_window'\\)"):
        session.load_state(tmp_path / "older.pt")


def test_a_state_saved_by_the_earlier_code_resumes_as_that_code_went_on():
    """Saved by commit a250795 (before the stream moved into llava/model) with the demo model, shapes.mp4 at 1 fps
    after 10 frames; what that code then captioned and answered is recorded here."""
    session = StreamingSession.from_pretrained(device="cpu")
    saved = Path(__file__).parent / "data" / "demo_stream_state_a250795.pt"
    with pytest.raises(LlavaError, match="saved by a different model \\(SceneTilling compared 96 values a frame, "
                       "this model 480 \\(scenetilling_feature 'tokens'\\)\\)"):
        session.load_state(saved)  # the demo model now compares its frames' bridge tokens
    session.model.config.bridge_config.scenetilling_feature = "cls"  # as it did when the state was saved
    session.load_state(saved)
    assert session.state.last_time == 9.0 and session.captions.last_caption == "a red circle"
    rest = [(t, f) for t, f in stream_frames(ROOT / "playground" / "demo" / "shapes.mp4", fps=1.0) if t > 9.0]
    events = [str(e) for t, f in rest for e in session.push(f, t)] + [str(e) for e in session.finish()]
    assert events == ["(Video Time = 12s) Assistant: a purple triangle", "(Video Time = 15s) Assistant: a white square",
                      "(Video Time = 17s) Assistant: a purple circle"]
    assert session.ask("What was in the first scene?") == "a green triangle"


def test_a_question_mid_segment_reads_the_open_segment(session, tiny_video):
    frames = stream_frames(tiny_video)
    for t, frame in frames[:3]:
        session.push(frame, t)
    assert session.state.readout is None and session.state.open_seen == 3
    assert isinstance(session.ask("What is happening?"), str)
    torch.testing.assert_close(session.state.bridge.memory, session.model.bridge.init_state(1).memory)


@pytest.mark.parametrize("static_cache", [False, True], ids=["dynamic-cache", "static-cache"])
def test_captions_of_scenes_ending_in_one_push_are_generated_together(tiny_checkpoint, tiny_video, monkeypatch,
                                                                      static_cache):
    """With a static KV cache (compiled once per batch size on a GPU) they are generated one at a time."""
    frames = flat_scenes(6) + [(t + 6.0, f) for t, f in stream_frames(tiny_video)]
    single, together = make_session(tiny_checkpoint), make_session(tiny_checkpoint)
    single.policy.skip_repeated = together.policy.skip_repeated = False
    together.policy.caption_batch = 2
    if static_cache:
        together.model.use_static_kv_cache()
    expected = [(t, e.text) for t, frame in frames for e in single.push(frame, t)]
    batches = []
    generate = together.model.generate

    def counting_generate(input_ids, **kwargs):
        batches.append(input_ids.shape[0])
        return generate(input_ids, **kwargs)

    monkeypatch.setattr(together.model, "generate", counting_generate)
    events = together.push_timed_frames(frames)
    assert [(e.time, e.text) for e in events] == expected
    size = 1 if static_cache else 2
    assert len(expected) >= 5 and batches == [size] * (len(expected) // size) + [1] * (len(expected) % size)


def caption_policy(captions: list[tuple[float, str]], gap: float) -> list[tuple[float, str]]:
    """What the policy keeps of every scene's caption: none within `gap` of the last kept, none repeating it."""
    kept: list[tuple[float, str]] = []
    for time, text in captions:
        if not kept or (time - kept[-1][0] >= gap and text != kept[-1][1]):
            kept.append((time, text))
    return kept


def test_the_caption_policy_is_the_same_one_frame_at_a_time_and_in_one_push(tiny_checkpoint, tiny_video):
    """Captions of two tokens, so that some repeat the one before."""
    frames = flat_scenes(6) + [(t + 6.0, f) for t, f in stream_frames(tiny_video)]
    every = make_session(tiny_checkpoint)
    every.policy.skip_repeated, every.settings.max_new_tokens = False, 2
    captions = [(e.time, e.text) for t, frame in frames for e in every.push(frame, t)]
    expected = caption_policy(captions, gap=2.0)
    assert len(expected) >= 2
    assert caption_policy(captions, gap=0.0) != captions  # some repeat the one before
    assert caption_policy(captions, gap=0.0) != expected  # some come too soon after the one before
    for push_all in (False, True):
        session = make_session(tiny_checkpoint)
        session.policy.min_caption_gap, session.settings.max_new_tokens = 2.0, 2
        if push_all:
            per_frame = session.push_frames(np.stack([f for _, f in frames]), [t for t, _ in frames])
        else:
            per_frame = [session.push(frame, t) for t, frame in frames]
        events = [e for frame_events in per_frame for e in frame_events]
        assert [(e.time, e.text) for e in events] == expected
