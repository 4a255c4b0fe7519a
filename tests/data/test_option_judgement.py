"""Option judgements (`llava.data.option_judgement`): the targets at the end of each option line of a lettered
question, with LLaMA's own tokenizer and a sentencepiece tokenizer trained here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from llava.constants import IGNORE_INDEX
from llava.conversation import DEFAULT_TEMPLATE, VICUNA_SYSTEM
from llava.data.dataset import DataConfig, SupervisedDataset, tokenize_row
from llava.data.option_judgement import judgement_token_ids, named_text_ends, option_line_ends
from llava.data.shapes_dataset import mc_prompt
from llava.train.sentencepiece_tokenizer import train_tokenizer

LLAMA_TOKENIZER = Path(__file__).parents[1] / "parity" / "golden" / "prompts" / "tokenizer_legacy_false"
OPTIONS = ["a white square", "a green triangle", "a blue circle", "a blue triangle"]
QUESTION = "What was in scene one?"


def lettered_row(answer: int, row_id: str = "q") -> dict:
    return {
        "id": row_id,
        "conversations": [
            {"from": "human", "value": mc_prompt(QUESTION, OPTIONS)},
            {"from": "gpt", "value": "ABCD"[answer]},
        ],
    }


@pytest.fixture(scope="module", params=["llama", "trained"])
def tokenizer(request, tmp_path_factory):
    if request.param == "llama":
        return AutoTokenizer.from_pretrained(LLAMA_TOKENIZER)
    texts = [VICUNA_SYSTEM, "USER: ASSISTANT:", mc_prompt(QUESTION, OPTIONS), "yes no A B C D"] * 20
    return train_tokenizer(texts, tmp_path_factory.mktemp("tok"), vocab_size=320)


def test_option_line_ends_mark_each_line_end_and_the_answer():
    text = mc_prompt(QUESTION, OPTIONS)
    ends = option_line_ends(text, "C")
    assert [flag for _, flag in ends] == [False, False, True, False]
    for (offset, _), option in zip(ends, OPTIONS, strict=True):
        assert text[offset] == "\n" and text[:offset].endswith(option)
    assert [flag for _, flag in option_line_ends(text, " B.")] == [False, True, False, False]


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        (mc_prompt(QUESTION, OPTIONS), "a blue circle"),  # answered in words, not by a letter
        (mc_prompt(QUESTION, OPTIONS), "E"),  # a letter that names no option
        ("What was in scene one?", "A"),  # an open question
        ("Pick one.\nB. a red circle\nC. a blue square\nAnswer.", "B"),  # the options do not start at A
        ("Pick one.\nA. a red circle\nB. a blue square", "B"),  # the last option line has no newline after it
    ],
)
def test_rows_that_are_not_lettered_questions_answered_by_a_letter_are_not_judged(text, reply):
    assert option_line_ends(text, reply) == []


def test_tokenize_row_labels_each_option_lines_end_and_nothing_else(tokenizer):
    right, wrong = judgement_token_ids(tokenizer)
    assert right != wrong
    for answer in range(4):
        row = lettered_row(answer)
        ids, labels = tokenize_row(row, tokenizer, DEFAULT_TEMPLATE, 2048, judge_options=True)
        plain_ids, plain_labels = tokenize_row(row, tokenizer, DEFAULT_TEMPLATE, 2048)
        assert torch.equal(ids, plain_ids)  # the prompt the model reads is unchanged
        changed = (labels != plain_labels).nonzero().flatten().tolist()
        assert len(changed) == 8  # two per option: its last word and the newline after it
        assert all(plain_labels[i] == IGNORE_INDEX for i in changed)  # only prompt tokens gain a target
        assert labels[changed].tolist() == [right if k == answer else wrong for k in range(4) for _ in range(2)]
        for (last_word, newline), option in zip(zip(changed[::2], changed[1::2]), OPTIONS, strict=True):
            assert last_word == newline - 1
            assert "\n" in tokenizer.decode(ids[newline : newline + 1])  # the token ending the option line
            assert tokenizer.decode(ids[:newline]).endswith(option)  # read right after the option's words
            assert option.endswith(tokenizer.decode(ids[last_word : last_word + 1]).strip())


def test_only_lettered_turns_of_a_conversation_are_judged(tokenizer):
    row = {
        "id": "two_turns",
        "conversations": [
            {"from": "human", "value": "Describe it.\nA. is not an option line here\nThanks."},
            {"from": "gpt", "value": "A red circle."},
            {"from": "human", "value": mc_prompt(QUESTION, OPTIONS)},
            {"from": "gpt", "value": "B"},
        ],
    }
    right, wrong = judgement_token_ids(tokenizer)
    _, labels = tokenize_row(row, tokenizer, DEFAULT_TEMPLATE, 2048, judge_options=True)
    _, plain_labels = tokenize_row(row, tokenizer, DEFAULT_TEMPLATE, 2048)
    assert labels[labels != plain_labels].tolist() == [wrong, wrong, right, right, wrong, wrong, wrong, wrong]


def test_the_dataset_judges_options_only_when_configured(tokenizer, tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(
        json.dumps(
            [
                lettered_row(2),
                {
                    "id": "open",
                    "conversations": lettered_row(0)["conversations"][:1]
                    + [{"from": "gpt", "value": "a white square"}],
                },
            ]
        )
    )
    right, wrong = judgement_token_ids(tokenizer)
    judged = SupervisedDataset(DataConfig(str(path), judge_options=True), tokenizer)
    plain = SupervisedDataset(DataConfig(str(path)), tokenizer)
    lettered_labels = judged[0]["labels"]
    assert lettered_labels[lettered_labels != plain[0]["labels"]].tolist() == [wrong] * 4 + [right] * 2 + [wrong] * 2
    assert torch.equal(judged[1]["labels"], plain[1]["labels"])  # answered in words: nothing judged


def named_row(right: bool, text: str = "a blue circle") -> dict:
    return {
        "id": "when",
        "conversations": [
            {"from": "human", "value": "When was a blue circle shown?"},
            {"from": "gpt", "value": "It was shown <when>." if right else "It was not shown."},
            {"from": "human", "value": "When was a blue circle shown?"},
            {"from": "gpt", "value": "It was not shown."},
        ],
        "judgements": [{"text": text, "right": right}],
    }


def test_named_text_ends_find_each_text_with_a_character_after_it():
    message = "When was a blue circle shown?"
    judgements = [{"text": "a blue circle", "right": True}, {"text": "shown?", "right": False}]
    assert named_text_ends(message, judgements) == [(message.index(" shown"), True)]  # nothing follows "shown?"
    assert named_text_ends(message, [{"text": "a red square", "right": True}]) == []


@pytest.mark.parametrize("right", [True, False])
def test_a_named_text_is_judged_at_its_last_word_and_the_token_after_it_in_the_first_question(tokenizer, right):
    yes, no = judgement_token_ids(tokenizer)
    row = named_row(right)
    ids, labels = tokenize_row(row, tokenizer, DEFAULT_TEMPLATE, 2048, judge_options=True)
    plain_ids, plain_labels = tokenize_row(row, tokenizer, DEFAULT_TEMPLATE, 2048)
    assert torch.equal(ids, plain_ids)
    changed = (labels != plain_labels).nonzero().flatten().tolist()
    assert len(changed) == 2 and changed[1] == changed[0] + 1  # the first question's only: the second has none
    assert all(plain_labels[i] == IGNORE_INDEX for i in changed)
    assert labels[changed].tolist() == [yes if right else no] * 2
    assert "circle".endswith(tokenizer.decode(ids[changed[0] : changed[0] + 1]).strip())
    assert tokenizer.decode(ids[: changed[0] + 1]).endswith("a blue circle")
    absent = named_row(right, text="a red square")  # a text the question does not hold: nothing judged
    assert torch.equal(tokenize_row(absent, tokenizer, DEFAULT_TEMPLATE, 2048, judge_options=True)[1], plain_labels)
    assert torch.equal(tokenize_row(row, tokenizer, DEFAULT_TEMPLATE, 2048)[1], plain_labels)  # off: nothing
