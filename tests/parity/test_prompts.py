"""Conversation templates and tokenisation against the original (golden/README.md, section prompts/): for every
row (8 cases x the templates llava_v1 and v1 x legacy false/true), this project's template renders the original's
prompt string, and `tokenize_prompt` with the golden tokenizer, loaded as this project loads one, gives its ids."""

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from llava.conversation import DEFAULT_TEMPLATE, get_template
from llava.mm_utils import tokenize_prompt
from llava.model.config import VideoLLaMBConfig

GOLDEN = Path(__file__).parent / "golden"
ROWS = json.loads((GOLDEN / "prompts" / "prompts.json").read_text())["results"]
IDS = [f"{row['case']}-{row['template']}-legacy_{str(row['legacy']).lower()}" for row in ROWS]


@pytest.fixture(scope="module")
def tokenizers():
    return {
        legacy: AutoTokenizer.from_pretrained(GOLDEN / "prompts" / f"tokenizer_legacy_{str(legacy).lower()}")
        for legacy in (False, True)
    }


def render(template: str, turns: list) -> str:
    conversation = get_template(template)
    for question, answer in turns:
        conversation.append_message(conversation.roles[0], question)
        conversation.append_message(conversation.roles[1], answer)
    return conversation.get_prompt()


def test_the_rows_cover_every_case_template_and_legacy_setting():
    assert len(ROWS) == 32
    assert {(row["template"], row["legacy"]) for row in ROWS} == {
        (t, legacy) for t in ("llava_v1", "v1") for legacy in (False, True)
    }


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_the_template_renders_the_originals_prompt(row):
    template = get_template(row["template"])
    assert (template.system, template.sep, template.sep2, list(template.roles)) == (
        row["system"],
        row["sep"],
        row["sep2"],
        row["roles"],
    )
    assert render(row["template"], row["turns"]) == row["prompt"]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_the_prompt_tokenises_to_the_originals_ids(row, tokenizers):
    assert tokenize_prompt(row["prompt"], tokenizers[row["legacy"]])[0] == row["ids"]


def test_a_released_config_prompts_with_v1_and_this_projects_with_llava_v1():
    """The release was trained with --version v1 ("user"); this project's checkpoints with llava_v1 ("human")."""
    released = VideoLLaMBConfig.from_released_dict(
        json.loads((GOLDEN / "model_default" / "videollamb-llava-tiny" / "config.json").read_text())
    )
    own = VideoLLaMBConfig()
    assert own.conv_template == DEFAULT_TEMPLATE
    for row in ROWS:
        config = released if row["template"] == "v1" else own
        assert render(config.conv_template, row["turns"]) == row["prompt"], row["case"]


def test_the_extra_word_boundary_leaves_the_reply_labels_on_the_reply(tokenizers):
    """A piece after a placeholder that starts with a space gets the original's extra boundary token; the training
    labels (character spans) still fall on exactly the reply's tokens."""
    prompt = "USER: <video> then answer ASSISTANT: two balls</s>"
    start = prompt.index("two")
    for tokenizer in tokenizers.values():
        ids, labels = tokenize_prompt(prompt, tokenizer, [(start, len(prompt))])
        after = ids.index(-201) + 1
        assert ids[after] == tokenizer.convert_tokens_to_ids("▁")  # the boundary the original keeps
        reply = tokenizer(prompt[start:], add_special_tokens=False)["input_ids"]
        assert [label for label in labels if label != -100] == reply == ids[-len(reply) :]
