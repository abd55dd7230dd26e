"""BERT WordPiece tokenisation with BLIP's two extra tokens.

The vocabulary of a BERT checkpoint gets `[DEC]` (the decoder's start token) and `[ENC]` (the JTM encoder's
first token) appended when it lacks them, giving ids 30522 / 30523 for bert-base-uncased, as in BLIP.
A question's leading `[CLS]` becomes `[ENC]`, an answer's becomes `[DEC]`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import BertWordPieceTokenizer
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

DEC, ENC = "[DEC]", "[ENC]"
VOCAB_FILE = "vocab.txt"


class MileTokenizer:
    def __init__(
        self,
        vocab_file: str | Path,
        lowercase: bool = True,
        max_question_len: int = 35,
        max_answer_len: int = 24,
    ):
        vocab_file = Path(vocab_file)
        if not vocab_file.is_file():
            raise FileNotFoundError(
                f"tokenizer vocabulary {vocab_file} not found (expected a BERT vocab.txt)"
            )
        self.vocab_file = vocab_file
        self.lowercase = lowercase
        self.max_question_len = max_question_len
        self.max_answer_len = max_answer_len
        self._tok = BertWordPieceTokenizer(str(vocab_file), lowercase=lowercase)
        self._tok.add_special_tokens([DEC, ENC])
        self.pad_token_id = self._id("[PAD]")
        self.cls_token_id = self._id("[CLS]")
        self.sep_token_id = self._id("[SEP]")
        self.bos_token_id = self._id(DEC)
        self.enc_token_id = self._id(ENC)

    @classmethod
    def from_dir(cls, directory: str | Path, **kwargs) -> MileTokenizer:
        """From a checkpoint directory holding `vocab.txt` (case taken from tokenizer_config.json if present)."""
        directory = Path(directory)
        config = directory / "tokenizer_config.json"
        if config.is_file() and "lowercase" not in kwargs:
            kwargs["lowercase"] = bool(json.loads(config.read_text()).get("do_lower_case", True))
        return cls(directory / VOCAB_FILE, **kwargs)

    def _id(self, token: str) -> int:
        index = self._tok.token_to_id(token)
        if index is None:
            raise ValueError(f"vocabulary {self.vocab_file} has no {token} token")
        return index

    def special_ids(self) -> dict[str, int]:
        """The ids a model must agree on, plus the vocabulary size."""
        return {
            "pad": self.pad_token_id,
            "cls": self.cls_token_id,
            "sep": self.sep_token_id,
            "bos": self.bos_token_id,
            "enc": self.enc_token_id,
            "vocab_size": self.vocab_size,
        }

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def _batch(self, texts: list[str], max_len: int, first_id: int) -> tuple[Tensor, Tensor]:
        rows = []
        for enc in self._tok.encode_batch(list(texts)):
            ids = enc.ids
            if len(ids) > max_len:  # keep the closing [SEP]
                ids = ids[: max_len - 1] + [self.sep_token_id]
            rows.append(torch.tensor([first_id] + ids[1:]))
        ids = pad_sequence(rows, batch_first=True, padding_value=self.pad_token_id)
        return ids, pad_sequence([torch.ones_like(row) for row in rows], batch_first=True)

    def encode_questions(self, questions: list[str], max_len: int | None = None) -> tuple[Tensor, Tensor]:
        """[ENC] q1 ... [SEP], truncated to max_len tokens (35 by default) -> ids, mask (B, L)."""
        return self._batch(questions, max_len or self.max_question_len, self.enc_token_id)

    def encode_answers(self, answers: list[str], max_len: int | None = None) -> tuple[Tensor, Tensor]:
        """[DEC] a1 ... [SEP] -> ids, mask (B, L)."""
        return self._batch(answers, max_len or self.max_answer_len, self.bos_token_id)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Untruncated length of each text with its two special tokens (for truncation reports)."""
        return [len(enc.ids) for enc in self._tok.encode_batch(list(texts))]

    def decode(self, ids: Tensor | list[list[int]]) -> list[str]:
        """Token ids -> text, special tokens dropped and WordPiece joined."""
        rows = ids.tolist() if isinstance(ids, Tensor) else ids
        return self._tok.decode_batch(rows, skip_special_tokens=True)

    def save(self, directory: str | Path) -> None:
        """Write vocab.txt (the base vocabulary; the two extra tokens are re-added on load)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / VOCAB_FILE).write_bytes(self.vocab_file.read_bytes())
        (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": self.lowercase}))
