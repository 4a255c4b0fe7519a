"""Option judgements: an auxiliary training target for the original's lettered multiple-choice prompt.

A question asked with lettered option lines ("A. a red circle", "B. ...", each on its own line) and answered with
one of their letters is learned, besides its reply, through two more targets per option: the option's last word
and the newline after it are labelled " yes" when that option is the answer and " no" otherwise. The model is so
trained to say, as it reads the last two words of each option and right after it, whether the option is right,
and the reply only has to copy the letter of the option it judged right. Labelling the newline alone (the
judgement made at the last word) taught the demo model to match the last word only: every one of its wrong
letters (24) named an option with the answer's shape and another colour; with the last word labelled too (the
judgement made at the word before it, then revised) none did, and the wrong letters fell from 24 to 8.

Why: a small LLM trained from scratch on the letter alone answers every lettered question with one constant
letter (matching the answer's content against the options' words and copying the matched letter is a two-step
circuit that the letter's loss alone gives no gradient towards). With these targets the judging is learned on
every option and the letter follows: the demo-size LLM (2 layers, width 128) on text questions whose answer the
question names went from one constant letter to 0.97 right within 1000 steps; on video, where the answer must
come from the memory, the demo recipe's lettered stage reached 0.67-1.00 per trained kind over two seeds
(docs/demo-model-research.md). The labels sit on prompt tokens, which are otherwise never supervised, so nothing
about inference changes. Off unless asked for (`DataConfig.judge_options`).

A row may also name texts of its question to judge (`"judgements": [{"text": "a red circle", "right": true}]`):
each gets the same two targets, at its last character and the one after it, " yes" when `right`. The synthetic
`when` questions name their object so ("When was a red circle shown?": " yes" when it was shown): trained on the
reply alone ("It was shown <when>." or "It was not shown."), the demo model's reply stayed a coin toss even with
the object on screen; with the object judged, the judgement formed and an LLM with two more layers
(`llava.model.expand`) replied by it (docs/demo-model-research.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from llava.errors import ConfigError

OPTION_LINE = re.compile(r"^([A-Z])\. [^\n]*$", re.MULTILINE)
YES, NO = " yes", " no"


def option_line_ends(message: str, reply: str) -> list[tuple[int, bool]]:
    """[(offset of the newline that ends each option line of `message`, whether that option is the answer)];
    the option's own last character is one before it.

    Empty unless `message` holds at least two option lines lettered A, B, C, ... in order, each followed by a
    newline, and `reply` is one of their letters (a trailing full stop allowed)."""
    lines = list(OPTION_LINE.finditer(message))
    letters = [line.group(1) for line in lines]
    answer = reply.strip().removesuffix(".")
    if len(lines) < 2 or letters != [chr(ord("A") + i) for i in range(len(lines))] or answer not in letters:
        return []
    if any(message[line.end() : line.end() + 1] != "\n" for line in lines):
        return []
    return [(line.end(), line.group(1) == answer) for line in lines]


def named_text_ends(message: str, judgements: Sequence[dict]) -> list[tuple[int, bool]]:
    """[(offset of the character right after each judged text's first occurrence in `message`, whether it is
    right)] for the row's `judgements` that `message` holds with a character after them."""
    ends = []
    for judgement in judgements:
        start = message.find(judgement["text"])
        end = start + len(judgement["text"])
        if start >= 0 and end < len(message):
            ends.append((end, bool(judgement["right"])))
    return ends


def judgement_token_ids(tokenizer) -> tuple[int, int]:
    """The token ids trained at the end of an option line: (right, wrong), the last tokens of " yes" and " no"."""
    right, wrong = (tokenizer(word, add_special_tokens=False)["input_ids"][-1] for word in (YES, NO))
    if right == wrong:
        raise ConfigError(f"the tokenizer ends {YES!r} and {NO!r} with the same token: options cannot be judged")
    return right, wrong


def judgement_labels(
    prompt: str, messages: Sequence[tuple[str, str]], tokenizer, judgements: Sequence[dict] = ()
) -> dict[int, int]:
    """{character offset in `prompt`: label} for the option lines of every human message answered by a letter:
    each line's last character (so its last word's token) and the newline after it; and for the row's named
    `judgements` (`named_text_ends`), in the first human message answered by the assistant, the same two.

    `messages` are the rendered conversation's (from, text) turns in order; each text is found in `prompt` after
    the previous one, so a text repeated in the system prompt cannot be taken for it."""
    judged: dict[int, bool] = {}  # prompt offset -> whether it ends the answer's line (or a right named text)
    cursor, named = 0, list(judgements)
    for (role, text), following in zip(messages, list(messages[1:]) + [("", "")], strict=True):
        start = prompt.find(text, cursor)
        if start < 0:
            raise ValueError(f"message not found in the rendered prompt: {text[:40]!r}")
        cursor = start + len(text)
        if role == "human" and following[0] == "gpt":
            for offset, is_answer in option_line_ends(text, following[1]) + named_text_ends(text, named):
                judged[start + offset - 1] = judged[start + offset] = is_answer
            named = []  # named texts belong to the first question
    if not judged:
        return {}  # a row without lettered options: the tokenizer is not asked for the judgement tokens
    right, wrong = judgement_token_ids(tokenizer)
    return {offset: right if is_answer else wrong for offset, is_answer in judged.items()}
