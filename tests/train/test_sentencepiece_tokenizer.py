"""The trained tokenizer writes the time placeholder as one piece, and its text comes back exactly."""

from transformers import AutoTokenizer

from llava.constants import TIME_PLACEHOLDER
from llava.data.shapes_dataset import NOT_SHOWN_ANSWER, WHEN_ANSWER
from llava.train.sentencepiece_tokenizer import train_tokenizer


def test_time_placeholder_is_one_piece(tmp_path):
    corpus = ["When was a red circle shown?", WHEN_ANSWER, NOT_SHOWN_ANSWER, "a blue square"] * 20
    train_tokenizer(corpus, tmp_path, vocab_size=300)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path))  # as a checkpoint loads it
    placeholder = tokenizer.convert_tokens_to_ids(TIME_PLACEHOLDER)
    assert placeholder != tokenizer.unk_token_id
    for text in (WHEN_ANSWER, f"x{TIME_PLACEHOLDER}y", TIME_PLACEHOLDER):
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert ids.count(placeholder) == 1
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
