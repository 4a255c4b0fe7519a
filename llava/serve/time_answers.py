"""Answers that state times: the model writes TIME_PLACEHOLDER, the session writes the time.

The LLM never sees clock times, so a model trained on `when` questions (`llava.data.shapes_dataset`) answers
"It was shown <when>." and the serving session (`ChatSession.reply`, `StreamingSession.ask`) replaces the
placeholder with the best span of that reply's evidence (`llava.serve.evidence`, method TIME_EVIDENCE_METHOD),
written as "from 12 s to 18 s" (seconds to a tenth, the ".0" of whole seconds left out):

    fill_times("It was shown <when>.", [Evidence(12.0, 18.25, 0.4), ...])   # "It was shown from 12 s to 18.2 s."

Without evidence (an image, frames without their times, no media) the placeholder becomes UNKNOWN_TIME. The model
alone decides that a question asks for a time; nothing here reads the question. `spans_in` reads the times back
(the grounding evaluation scores them). A streamed reply holds back the placeholder until it is filled
(`HeldPlaceholder`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llava.constants import TIME_PLACEHOLDER
from llava.serve.evidence import DEFAULT_SCORER, Evidence

# The evidence method whose best span fills the placeholder: each segment alone (fresh memory). A time answer says
# where its object is, and a model that judges objects in view finds it likeliest given the segment that shows it:
# for a demo-size model trained on `when` questions, the true answers' best `alone` span held the scene for 17 of 20
# held-out questions (6-16 scenes), the best `without` span for 2 (docs/demo-model-research.md).
TIME_EVIDENCE_METHOD = "alone"
UNKNOWN_TIME = "at a time I cannot tell"
_NUMBER = r"(\d+(?:\.\d+)?)"
_SPAN = re.compile(rf"from {_NUMBER} s to {_NUMBER} s")


@dataclass(frozen=True)
class TimeFill:
    """An answer whose placeholder the session filled: the question, the model's reply, the filled answer and the
    evidence (best first) the time came from."""

    question: str
    reply: str
    answer: str
    evidence: list[Evidence]


def seconds_text(seconds: float) -> str:
    """12.0 -> "12", 12.25 -> "12.2" (to a tenth; no decimal for whole seconds)."""
    tenths = round(seconds * 10)
    return str(tenths // 10) if tenths % 10 == 0 else f"{tenths / 10:.1f}"


def time_phrase(evidence: Sequence[Evidence]) -> str:
    """The best span in words: "from 12 s to 18 s"; UNKNOWN_TIME without evidence."""
    if not evidence:
        return UNKNOWN_TIME
    return f"from {seconds_text(evidence[0].start)} s to {seconds_text(evidence[0].end)} s"


def fill_times(reply: str, evidence: Sequence[Evidence]) -> str:
    """`reply` with every TIME_PLACEHOLDER replaced by `time_phrase(evidence)` (unchanged without one)."""
    return reply.replace(TIME_PLACEHOLDER, time_phrase(evidence))


def evidence_method(reply: str, default: str = DEFAULT_SCORER) -> str:
    """The evidence method for a reply: TIME_EVIDENCE_METHOD where the model wrote a time, else `default`."""
    return TIME_EVIDENCE_METHOD if TIME_PLACEHOLDER in reply else default


def spans_in(text: str) -> list[tuple[float, float]]:
    """The spans an answer states ("from A s to B s"), in order."""
    return [(float(a), float(b)) for a, b in _SPAN.findall(text)]


class HeldPlaceholder:
    """Passes a reply's streamed pieces on to `on_text`, holding back everything from the first placeholder (or
    from a tail that may still become one); `finish(answer)` sends the rest of the final, filled answer."""

    def __init__(self, on_text: Callable[[str], None]) -> None:
        self.on_text = on_text
        self.reply = ""
        self.sent = ""

    def __call__(self, piece: str) -> None:
        self.reply += piece
        safe = self.reply.split(TIME_PLACEHOLDER, 1)[0]
        if len(safe) == len(self.reply):
            safe = safe[: len(safe) - _placeholder_start(safe)]
        self._send(safe)

    def finish(self, answer: str) -> None:
        self._send(answer)

    def _send(self, text: str) -> None:
        if len(text) > len(self.sent) and text.startswith(self.sent):
            self.on_text(text[len(self.sent) :])
            self.sent = text


def _placeholder_start(text: str) -> int:
    """The length of the longest tail of `text` that begins TIME_PLACEHOLDER."""
    return next(
        (k for k in range(min(len(TIME_PLACEHOLDER) - 1, len(text)), 0, -1) if TIME_PLACEHOLDER.startswith(text[-k:])),
        0,
    )
