"""Evidence: the time spans of the segments an answer rests on, each with a score, best first.

    session.load_video("clip.mp4")
    answer = session.ask("What was in the first scene?")
    for item in session.evidence("What was in the first scene?", answer):
        print(f"{item.start:.1f}-{item.end:.1f} s  {item.score:+.3f}")

Nothing is trained for it: a loaded video keeps, beside what the LLM reads, its segments (SceneTilling's cuts,
`VideoLLaMBForCausalLM.trace_video`), their time spans and each segment's tokens as the bridge read them. A
segment's score ("without", the default) is how much less likely the model finds the answer (the rise of its mean
token cross-entropy) when that segment is left out of the video and the others pass through the bridge as before:
the segments the answer depends on. It costs one bridge pass and one LLM pass over the prompt per segment. Other
methods (`SCORERS`): "gain" (the likelihood after each segment less that after the one before), "carried" (the
likelihood after each segment), "alone" (given each segment alone, fresh memory) and "retrieval" (the last memory's
retrieval attention over the segments' memory blocks, the same for every question). `llava.eval.grounding`
measures them against the scenes of synthetic videos; "without" grounds best (the README's Evidence section), and
"alone" grounds the answers that state a time (`llava.serve.time_answers.TIME_EVIDENCE_METHOD`).
The answer is scored as the reply to its question alone (a first turn, as `llava.serve.reply_likelihood` scores
options), whatever turns came before. Segments passed through the bridge again keep the segment positions they first had
(the "mem" variant's), so leaving one out does not renumber the others.

A segment's span, by presentation time: each sampled frame stands for the time halfway to its neighbours (the
first from the video's start at 0 s at the earliest, the last half a frame step past its own time), so a segment
runs from halfway between the previous segment's last frame and its first frame to halfway between its last frame
and the next segment's first frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from llava.serve.reply_likelihood import option_losses
from llava.video.scenetilling import segments_from_boundaries


@dataclass(frozen=True)
class Evidence:
    """One segment an answer rests on: its span in seconds (presentation time) and its score (higher = more)."""

    start: float
    end: float
    score: float

    def to_dict(self) -> dict[str, float]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "score": round(self.score, 4)}


@dataclass
class VideoSegments:
    """A loaded video's segments, for evidence."""

    spans: list[tuple[float, float]]  # (start, end) seconds of each segment
    readouts: list[Tensor] | None  # (N_s, h) after each segment, memory carried: a stream's (None: from `inputs`)
    inputs: list[Tensor]  # (1, n_s, d): each segment's tokens as the bridge read them (a whole video's)
    retrieval: list[float]  # the last segment's memory retrieval: its attention weight on each segment's block


def frame_spans(times: Sequence[float] | np.ndarray) -> list[tuple[float, float]]:
    """Each sampled frame's span: halfway to its neighbours; the first from 0 s at the earliest, the last half a
    step past its own time (a single frame: its time to its time)."""
    t = np.asarray(times, dtype=np.float64)
    if t.size == 0:
        return []
    middles = (t[1:] + t[:-1]) / 2
    step = float(t[-1] - t[-2]) if t.size > 1 else 0.0
    starts = np.concatenate([[max(0.0, t[0] - (float(t[1] - t[0]) / 2 if t.size > 1 else 0.0))], middles])
    ends = np.concatenate([middles, [t[-1] + step / 2]])
    return [(float(a), float(b)) for a, b in zip(starts, ends, strict=True)]


def segment_spans(
    times: Sequence[float] | np.ndarray, frame_ranges: Sequence[tuple[int, int]]
) -> list[tuple[float, float]]:
    """Each segment's span in seconds: from its first frame's span start to its last frame's span end."""
    per_frame = frame_spans(times)
    return [(per_frame[first][0], per_frame[last][1]) for first, last in frame_ranges]


def joined_spans(shown: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Segments known by the times of their first and last frames (a stream's) -> spans that meet halfway between
    one segment's last frame and the next one's first; the first starts at its first frame, the last ends at its
    last frame."""
    starts = [shown[0][0]] + [(a[1] + b[0]) / 2 for a, b in zip(shown[:-1], shown[1:], strict=True)] if shown else []
    ends = starts[1:] + ([shown[-1][1]] if shown else [])
    return list(zip(starts, ends, strict=True))


def retrieval_weights(model, memory_tilde: Tensor, cache: Sequence[Tensor], segments: int) -> list[float]:
    """How much the retriever's query (M~ of the last segment, (1, M, d)) attends to each cache block (one per
    segment, (1, M, d) each), averaged over heads and memory tokens; segments whose block left the cache get 0."""
    attention = model.bridge.retriever.crossattention
    heads = attention.num_heads
    kv = torch.cat(list(cache), dim=1)  # (1, K, d)
    q = attention.q_proj(memory_tilde).unflatten(-1, (heads, -1)).transpose(1, 2)  # (1, h, M, d/h)
    k = attention.k_proj(kv).unflatten(-1, (heads, -1)).transpose(1, 2)  # (1, h, K, d/h)
    weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1).mean(dim=(0, 1, 2))  # (K,)
    per_block = [float(w.sum()) for w in weights.split([c.shape[1] for c in cache])]
    return [0.0] * (segments - len(per_block)) + per_block


@torch.no_grad()
def trace_segments(model, pixels: Tensor, times: Sequence[float] | np.ndarray) -> tuple[Tensor, VideoSegments]:
    """A preprocessed video (T, 3, H, W) sampled at `times` -> what the LLM reads (N, h) and its segments."""
    trace = model.trace_video(pixels)
    last = trace.steps[-1]
    segments = VideoSegments(
        spans=segment_spans(times, segments_from_boundaries(trace.boundaries)),
        readouts=None,  # recomputed from the inputs by the methods that need them: less to keep per video
        inputs=[step.inputs for step in trace.steps],
        retrieval=retrieval_weights(model, last.memory_tilde, last.state.cache, len(trace.steps)),
    )
    return trace.projected[-1], segments


@torch.no_grad()
def through_bridge(model, inputs: Sequence[Tensor], carry: bool = True, every: bool = True) -> list[Tensor]:
    """Segments' tokens (each (1, n, d), as the bridge read them) through the bridge again, the memory carried from
    one to the next (or each from the initial memory) -> the LLM's visual tokens after each, or after the last."""
    state, out = model.bridge.init_state(1), []
    for index, tokens in enumerate(inputs):
        step = model.bridge.advance(state if carry else model.bridge.init_state(1), tokens, segment_positions=False)
        state = step.state
        if every or index == len(inputs) - 1:
            out.append(model.project(model.bridge.readout(state, step.hidden, 0, tokens.shape[1])))
    return out


def carried_readouts(model, segments: VideoSegments) -> list[Tensor]:
    """What the LLM would read after each segment (kept by a stream; recomputed for a whole video)."""
    return segments.readouts if segments.readouts is not None else through_bridge(model, segments.inputs)


def readouts_without(session, segments: VideoSegments) -> list[Tensor]:
    """For each segment, what the LLM would read after the whole video passed through the bridge without that
    segment (no visual tokens at all for a one-segment video)."""
    inputs = segments.inputs
    return [
        through_bridge(session.model, [*inputs[:skipped], *inputs[skipped + 1 :]], every=False)[-1]
        if len(inputs) > 1
        else no_video(session)
        for skipped in range(len(inputs))
    ]


def answer_losses(session, readouts: Sequence[Tensor], question: str, answer: str) -> list[float]:
    """The mean token cross-entropy of `answer` to `question` when the LLM reads each of `readouts`."""
    return [option_losses(session.fork(media=readout), question, [answer])[0] for readout in readouts]


def no_video(session) -> Tensor:
    """No visual tokens at all: the question alone."""
    return session.media.new_zeros(0, session.media.shape[1])


def gain_scores(session, segments: VideoSegments, question: str, answer: str) -> list[float]:
    """How much each segment raised the answer's likelihood (minus its mean token cross-entropy) over the video up
    to the segment before (before the first: no video)."""
    losses = answer_losses(session, [no_video(session), *carried_readouts(session.model, segments)], question, answer)
    return [before - after for before, after in zip(losses[:-1], losses[1:], strict=True)]


def carried_scores(session, segments: VideoSegments, question: str, answer: str) -> list[float]:
    """The answer's likelihood (minus its mean token cross-entropy) after each segment, memory carried."""
    return [-loss for loss in answer_losses(session, carried_readouts(session.model, segments), question, answer)]


def alone_scores(session, segments: VideoSegments, question: str, answer: str) -> list[float]:
    """The answer's likelihood (minus its mean token cross-entropy) given each segment alone (fresh memory)."""
    alone = through_bridge(session.model, segments.inputs, carry=False)
    return [-loss for loss in answer_losses(session, alone, question, answer)]


def without_scores(session, segments: VideoSegments, question: str, answer: str) -> list[float]:
    """How much the answer's likelihood falls (its mean token cross-entropy rises) when the segment is left out of
    the video: the segments the answer depends on."""
    (full,) = answer_losses(session, [session.media], question, answer)
    return [loss - full for loss in answer_losses(session, readouts_without(session, segments), question, answer)]


def retrieval_scores(session, segments: VideoSegments, question: str, answer: str) -> list[float]:
    """The last segment's memory retrieval over the segments (the same whatever the question)."""
    return list(segments.retrieval)


SCORERS: dict[str, Callable[..., list[float]]] = {
    "without": without_scores,
    "gain": gain_scores,
    "carried": carried_scores,
    "alone": alone_scores,
    "retrieval": retrieval_scores,
}
DEFAULT_SCORER = "without"


def rank_evidence(spans: Sequence[tuple[float, float]], scores: Sequence[float]) -> list[Evidence]:
    """The segments as Evidence, best score first (earlier first among equal scores)."""
    order = sorted(range(len(spans)), key=lambda i: (-scores[i], i))
    return [Evidence(spans[i][0], spans[i][1], float(scores[i])) for i in order]


def format_evidence(items: Sequence[Evidence]) -> str:
    """One line: "evidence: 3.4-5.6 s (0.274), ..." best first; "evidence: none" for an image."""
    if not items:
        return "evidence: none (no video segments)"
    return "evidence: " + ", ".join(f"{e.start:.1f}-{e.end:.1f} s ({e.score:.3f})" for e in items)


def answer_evidence(
    session, segments: VideoSegments, question: str, answer: str, method: str = DEFAULT_SCORER
) -> list[Evidence]:
    """The evidence of `answer` to `question` about the video whose `segments` these are, best first."""
    if method not in SCORERS:
        raise ValueError(f"unknown evidence method {method!r}; valid: {', '.join(SCORERS)}")
    return rank_evidence(segments.spans, SCORERS[method](session, segments, question, answer))
