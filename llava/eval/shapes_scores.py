"""Score a model on freshly generated synthetic videos: scene captions and first-scene recall.

    python -m llava.eval.shapes_scores --seed 1001 --num-videos 40 --output runs/scores.json
    python -m llava.eval.shapes_scores --seed 1001 --num-videos 40 --ablate-memory

- scene captions: for every scene j of every video, the video up to the end of scene j (sampled as the model
  samples a video: its config's frame sampling, or --num-frames / --video-fps / --max-frames) is asked
  "Describe the video in one sentence."; correct when the answer is scene j's caption ("a red circle").
- first-scene recall: videos of six or more scenes are asked "What was in the first scene?".
- lettered multiple choice: videos of six or more scenes are also asked one question of each kind of
  `llava.data.shapes_dataset` in the original's lettered prompt ("A. ... D. ... Answer with the option's letter
  from the given choices directly."), answered with the chat defaults; right only when the answer is the right
  letter alone (`llava.eval.answers.letter_alone`: naming the option's words is wrong). Chance is 0.25.
- scene cuts: every video, sampled whole, is cut into segments as the model cuts it (SceneTilling); exact when the
  segments change exactly where the sampled frames' scene changes.
- streaming captions (at the model's rate, 1 fps for one that samples uniformly, or --video-fps; --stream-fps is
  its older name): each video is streamed through `StreamingSession`; a scene
  counts when a caption arrives within one second after it ends (at the first frame of the next scene, or at
  the end of the stream for the last scene) and names the scene that ended.
With --ablate-memory the bridge memory is reset at every segment: first-scene recall should fall to chance.
--output (older name --out) writes the scores as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from llava.data import shapes_dataset
from llava.data.shapes_world import VideoSpec
from llava.errors import LlavaError, report_error
from llava.eval.answers import letter_alone, letter_prompt
from llava.eval.results import report_scores
from llava.progress import progress_bar
from llava.serve.chat_session import ChatSession
from llava.serve.options import add_flag, add_sampling_options, check_sampling_options, frame_sampling
from llava.serve.streaming_session import StreamingSession
from llava.video.decode import open_video

CAPTION_QUESTION = shapes_dataset.TEMPLATES["caption"]
FIRST_QUESTION = shapes_dataset.TEMPLATES["first_scene"]


def normalise(text: str) -> str:
    return " ".join(text.lower().replace(".", " ").split())


MIN_SCENES_ASKED = 6  # first-scene and lettered questions are asked of videos with at least this many scenes


@dataclass
class VideoScores:
    captions: list[bool]  # caption correct, per scene
    cuts_exact: bool  # the model's segments change exactly where the sampled frames' scene changes
    first: bool | None  # first-scene answer correct (None: fewer than MIN_SCENES_ASKED scenes)
    letters: list[tuple[str, bool]]  # (kind, right letter) of each lettered question (6+ scene videos)


def cuts_are_scene_changes(spans: list[tuple[float, float]], times: np.ndarray, spec: VideoSpec) -> bool:
    """Whether segments of these (start, end) seconds, over frames sampled at `times`, change exactly where the
    frames' scene changes."""
    scene_of = np.array([spec.scene_index_at(int(round(t * spec.fps))) for t in times])
    segment_of = np.searchsorted([start for start, _ in spans], times, side="right") - 1
    return bool(np.array_equal(np.diff(scene_of) != 0, np.diff(segment_of) != 0))


def score_video(session: ChatSession, folder: Path, video: dict, lettered: list[tuple[dict, int]]) -> VideoScores:
    """Captions of every scene, the scene cuts of the whole video and, on a 6+ scene video, its first scene and its
    lettered questions `lettered` ((test_q row, answer index) each)."""
    with open_video(folder / video["video"]) as reader:
        count, times, rate = reader.num_frames, reader.times, reader.fps
        assert count is not None and times is not None  # a file's frames are counted when it is opened
        frames = cast(np.ndarray, reader.get_frames(np.arange(count)))  # no transform: (T, H, W, 3) uint8
    scenes = video["scenes"]
    captions = []
    for scene in scenes:
        end = scene["end_frame"] + 1
        session.load_frames(frames[:end][session.sampling.indices(times[:end], rate)])
        captions.append(normalise(session.ask(CAPTION_QUESTION)) == normalise(scene["caption"]))
    picked = session.sampling.indices(times, rate)
    session.load_frames(frames[picked], np.asarray(times)[picked])
    spans = session.segments.spans if session.segments else [(0.0, float(times[-1]))]  # read as images: one segment
    scores = VideoScores(
        captions, cuts_are_scene_changes(spans, np.asarray(times)[picked], VideoSpec.from_truth(video)), None, []
    )
    if len(scenes) >= MIN_SCENES_ASKED:
        scores.first = normalise(session.ask(FIRST_QUESTION)) == normalise(scenes[0]["caption"])
        for row, answer in lettered:
            session.reset()
            options = list(row["option"].values())
            reply = session.ask(letter_prompt(row["question"], options))
            scores.letters.append((row["type"], letter_alone(reply, len(options)) == answer))
    return scores


def score_stream(stream: StreamingSession, path: Path, video: dict, fps: float) -> list[bool]:
    """Per scene: was it captioned correctly within one second after it ended?"""
    stream.reset()
    heard: list[tuple[float, str]] = []
    with open_video(path) as reader:
        for t, frame in reader.iter_frames(fps):
            heard += [(t, normalise(e.text)) for e in stream.push(frame, t)]
        end = video["scenes"][-1]["end"]
        heard += [(end, normalise(e.text)) for e in stream.finish()]
    return [
        any(scene["end"] - 1e-6 <= t <= scene["end"] + 1.0 and text == normalise(scene["caption"]) for t, text in heard)
        for scene in video["scenes"]
    ]


def lettered_questions(folder: Path) -> dict[str, list[tuple[dict, int]]]:
    """The multiple-choice files' questions by video file name: (test_q row, answer index)."""
    answers = {row["question_id"]: row["answer"] for row in json.loads((folder / "test_a.json").read_text())}
    by_video: dict[str, list[tuple[dict, int]]] = {}
    for row in json.loads((folder / "test_q.json").read_text()):
        by_video.setdefault(row["video_name"], []).append((row, answers[row["question_id"]]))
    return by_video


def evaluate(session: ChatSession, folder: Path, stream_fps: float) -> dict:
    truth = json.loads((folder / "truth.json").read_text())
    lettered = lettered_questions(folder)
    stream = StreamingSession(session.model, session.tokenizer, session.processor)
    captions, cuts, firsts, streamed, letters = [], [], [], [], []
    for video in progress_bar(truth["videos"], desc="videos", unit="video"):
        scores = score_video(session, folder, video, lettered.get(Path(video["video"]).name, []))
        captions += scores.captions
        cuts.append(scores.cuts_exact)
        letters += scores.letters
        if scores.first is not None:
            firsts.append(scores.first)
        streamed += score_stream(stream, folder / video["video"], video, stream_fps)
    by_kind = {kind: [ok for k, ok in letters if k == kind] for kind in dict.fromkeys(k for k, _ in letters)}
    return {
        "streaming_caption_accuracy": float(np.mean(streamed)) if streamed else None,
        "stream_fps": stream_fps,
        "scene_caption_accuracy": float(np.mean(captions)) if captions else None,
        "scenes": len(captions),
        "scene_cuts_exact": float(np.mean(cuts)),
        "first_scene_accuracy_6plus": float(np.mean(firsts)) if firsts else None,
        "videos_6plus": len(firsts),
        "lettered_accuracy_6plus": float(np.mean([ok for _, ok in letters])) if letters else None,
        "lettered_questions_6plus": len(letters),
        "lettered_accuracy_by_kind": {kind: float(np.mean(oks)) for kind, oks in by_kind.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default=None, help="checkpoint folder (default: the bundled demo model)")
    parser.add_argument("--seed", type=int, default=1001, help="seed of the held-out videos (training used 0-3)")
    parser.add_argument("--num-videos", type=int, default=40)
    parser.add_argument("--min-scenes", type=int, default=2)
    parser.add_argument("--max-scenes", type=int, default=8)
    parser.add_argument("--ablate-memory", action="store_true", help="reset the bridge memory at every segment")
    add_sampling_options(parser, fps_aliases=("--stream-fps",))
    add_flag(parser, "--output", aliases=("--out",), type=Path, default=None, help="write the scores as JSON here")
    args = parser.parse_args(argv)
    check_sampling_options(parser, args)
    if args.num_videos < 1:
        parser.error(f"--num-videos must be at least 1, got {args.num_videos}")
    try:
        session = ChatSession.from_pretrained(args.model_path, device="cpu")
        session.sampling = frame_sampling(args, session.sampling)
        session.model.set_memory_ablation(args.ablate_memory)
        with tempfile.TemporaryDirectory() as tmp:
            shapes_dataset.main(
                [
                    "--out",
                    tmp,
                    "--num-videos",
                    str(args.num_videos),
                    "--seed",
                    str(args.seed),
                    "--min-scenes",
                    str(args.min_scenes),
                    "--max-scenes",
                    str(args.max_scenes),
                    "--format",
                    "mc",
                    "--quiet",
                ]
            )
            scores = evaluate(session, Path(tmp), session.sampling.stream_fps)
    except LlavaError as err:
        return report_error(err)
    scores |= {"seed": args.seed, "num_videos": args.num_videos, "ablate_memory": args.ablate_memory}
    report_scores(scores, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
