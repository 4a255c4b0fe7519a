"""Train a small sentencepiece tokenizer and load it as a transformers Llama tokenizer.

The bundled demo model and the tests use this: a real sentencepiece model (byte fallback, so any text
tokenises), saved as `tokenizer.model` and loaded with `LlamaTokenizer.from_pretrained(folder)`. Where the texts
hold the time placeholder (`llava.constants.TIME_PLACEHOLDER`, in `when` answers), it is one piece, so a model
writes it in one decision; other corpora train the same tokenizer as before.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm
from transformers import LlamaTokenizer

from llava.constants import TIME_PLACEHOLDER

BYTE_PIECES = 256


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 512) -> LlamaTokenizer:
    """Train a BPE sentencepiece model on `texts`, save it as a Llama tokenizer in `out_dir`, return it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = "\n".join(texts)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(text, encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(out_dir / "tokenizer"),
            vocab_size=vocab_size,
            model_type="bpe",
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            byte_fallback=True,
            character_coverage=1.0,
            hard_vocab_limit=False,
            minloglevel=2,
            user_defined_symbols=[TIME_PLACEHOLDER] if TIME_PLACEHOLDER in text else [],
        )
    (out_dir / "tokenizer.vocab").unlink(missing_ok=True)
    tokenizer = LlamaTokenizer.from_pretrained(str(out_dir))
    tokenizer.pad_token = tokenizer.unk_token
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer
