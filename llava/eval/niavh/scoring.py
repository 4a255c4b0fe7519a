"""Scoring one cell: multiple choice with circular evaluation, exact / keyword match, or an LLM judge.

- mc (default, deterministic): the four options are asked in every rotation; the cell is correct only if
  every rotation is answered correctly (a model that always says "A" scores 0). Score 0 or 1.
- exact: the open question; correct when the answer equals the reference, or holds all of its keywords
  (the reference without articles and other stop words). Score 0 or 1.
- judge: the open question, graded 1-10 against the reference by any OpenAI-compatible chat endpoint with
  the original's rubric, at temperature 0. Score 1 to 10.

Every scorer takes `ask(instruction) -> str`, the model bound to the cell's video.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from llava.errors import ConfigError, LlavaError
from llava.eval.answers import extract_choice, letter_prompt, rotations
from llava.eval.niavh.needles import Probe

Ask = Callable[[str], str]
STOP_WORDS = frozenset("a an the is are was were be of in on at to and or it this that there".split())


class Scorer(ABC):
    name: str
    score_range: tuple[float, float]

    @abstractmethod
    def score(self, probe: Probe, ask: Ask) -> dict[str, Any]:
        """Ask the model about the needle; returns at least score, correct (None for the judge) and
        model_response."""


class MultipleChoiceScorer(Scorer):
    name = "mc"
    score_range = (0.0, 1.0)

    def score(self, probe: Probe, ask: Ask) -> dict[str, Any]:
        rows = []
        for options, gold in rotations(probe.options, probe.answer_index):
            response = ask(letter_prompt(probe.question, options))
            pred = extract_choice(response, options)
            rows.append(
                {"options": list(options), "answer": gold, "response": response, "pred": pred, "correct": pred == gold}
            )
        correct = all(row["correct"] for row in rows)
        return {
            "score": float(correct),
            "correct": correct,
            "model_response": rows[0]["response"],
            "rotations_correct": sum(row["correct"] for row in rows),
            "rotations": rows,
        }


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


def match_answer(response: str, reference: str) -> str | None:
    """'exact' when the normalised texts are equal, 'keyword' when the response holds every keyword of the
    reference (all its words when it has only stop words), else None."""
    said, ref = _words(response), _words(reference)
    if not ref:
        return None
    if said == ref:
        return "exact"
    keywords = [w for w in ref if w not in STOP_WORDS] or ref
    return "keyword" if set(keywords) <= set(said) else None


class KeywordScorer(Scorer):
    name = "exact"
    score_range = (0.0, 1.0)

    def score(self, probe: Probe, ask: Ask) -> dict[str, Any]:
        response = ask(probe.question)
        match = match_answer(response, probe.answer)
        return {
            "score": float(match is not None),
            "correct": match is not None,
            "match": match,
            "model_response": response,
        }


JUDGE_SYSTEM = "You are an impartial grader. You compare an answer with a reference answer to the same question."
JUDGE_RUBRIC = """Rate the answer on a scale of 1 to 10 against the reference answer:
Score 1: the answer has nothing to do with the reference.
Score 3: the answer is slightly related but does not agree with the reference.
Score 5: the answer is fairly related but contains mistakes.
Score 7: the answer agrees with the reference but leaves out minor details.
Score 10: the answer is fully correct and agrees with the reference completely.
Reply with "Score: N" and nothing else.

[Question]
{question}

[Reference answer]
{reference}

[Answer]
{answer}"""
_SCORE = re.compile(r"score\W*(\d+(?:\.\d+)?)", re.IGNORECASE)
_NUMBER = re.compile(r"\b(\d+(?:\.\d+)?)\b")


def parse_judge_score(text: str) -> float:
    """'Score: 7' (or a bare '7') -> 7.0; anything else, or a value outside 1..10, is an error."""
    match = _SCORE.search(text) or _NUMBER.search(text)
    value = float(match.group(1)) if match else None
    if value is None or not 1 <= value <= 10:
        raise LlavaError(f"the judge's reply holds no score between 1 and 10: {text[:200]!r}")
    return value


class JudgeScorer(Scorer):
    """The open question graded by an OpenAI-compatible chat completions endpoint (urllib, no SDK)."""

    name = "judge"
    score_range = (1.0, 10.0)

    def __init__(self, url: str, key: str | None = None, model: str = "gpt-3.5-turbo", timeout: float = 60.0) -> None:
        if not url:
            raise ConfigError(
                "--scoring judge needs --judge-url (an OpenAI-compatible base URL, e.g. https://api.openai.com/v1)"
            )
        base = url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else f"{base}/chat/completions"
        self.key, self.model, self.timeout = key, model, timeout

    def grade(self, question: str, reference: str, answer: str) -> tuple[float, str]:
        """(score 1-10, the judge's reply)."""
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": JUDGE_SYSTEM},
                {"role": "user", "content": JUDGE_RUBRIC.format(question=question, reference=reference, answer=answer)},
            ],
        }
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                content = json.load(reply)["choices"][0]["message"]["content"]
        except urllib.error.HTTPError as err:
            raise LlavaError(f"judge {self.url}: HTTP {err.code} {err.reason}") from err
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise LlavaError(f"judge {self.url}: cannot reach it ({err})") from err
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise LlavaError(f"judge {self.url}: the reply is not a chat completion ({err})") from err
        return parse_judge_score(str(content)), str(content)

    def score(self, probe: Probe, ask: Ask) -> dict[str, Any]:
        response = ask(probe.question)
        value, reply = self.grade(probe.question, probe.answer, response)
        return {
            "score": value,
            "correct": None,
            "model_response": response,
            "judge_reply": reply,
            "judge_model": self.model,
        }


SCORINGS = ("mc", "exact", "judge")


def make_scorer(
    name: str, judge_url: str | None = None, judge_key: str | None = None, judge_model: str = "gpt-3.5-turbo"
) -> Scorer:
    if name == "mc":
        return MultipleChoiceScorer()
    if name == "exact":
        return KeywordScorer()
    if name == "judge":
        return JudgeScorer(judge_url or "", judge_key, judge_model)
    raise ConfigError(f"unknown scoring {name!r}; valid: {', '.join(SCORINGS)}")
