"""The trained tokenizer writes the time placeholder as one piece where its corpus holds it, and text comes back
exactly either way."""

from transformers import AutoTokenizer

from llava.constants import TIME_PLACEHOLDER
from llava.data.shapes_dataset import NOT_SHOWN_ANSWER, WHEN_ANSWER
from llava.train.sentencepiece_tokenizer import train_tokenizer

CORPUS = ["When was a red circle shown?", NOT_SHOWN_ANSWER, "a blue square"]
TEXTS = (WHEN_ANSWER, f"x{TIME_PLACEHOLDER}y", TIME_PLACEHOLDER)


def test_time_placeholder_is_one_piece(tmp_path):
    train_tokenizer([*CORPUS, WHEN_ANSWER] * 20, tmp_path, vocab_size=300)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path))  # as a checkpoint loads it
    placeholder = tokenizer.convert_tokens_to_ids(TIME_PLACEHOLDER)
    assert placeholder != tokenizer.unk_token_id
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert ids.count(placeholder) == 1
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_without_it_in_the_corpus_it_still_comes_back(tmp_path):
    train_tokenizer(CORPUS * 20, tmp_path, vocab_size=300)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path))
    assert tokenizer.convert_tokens_to_ids(TIME_PLACEHOLDER) == tokenizer.unk_token_id  # no such piece
    for text in TEXTS:
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids, skip_special_tokens=True) == text
