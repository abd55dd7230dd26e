"""The canonical form answers are compared in, and the same folding for questions.

Predictions come out of a WordPiece decoder, ground truths out of JSON files, so the same answer can be spelled
"left lung's" / "left lung ' s", "x-ray" / "x - ray", "t2" / "t ##2", "Yes" / "yes ". `normalize_answer` maps all
of these to one form: lower case, accents stripped (the uncased vocabulary drops them), WordPiece continuations
re-joined, every punctuation character folded to a space (BERT splits on each one, so a decoded answer has spaces
around it), whitespace collapsed, and the spaces BERT puts around CJK characters removed ("x 光" -> "x光").

Scoring (`mile.engine.metrics`), answer options (`mile.instruct.options`) and run comparisons (`mile.report`) use
it; the leak guard (`mile.instruct.leaks`) matches questions with `normalize_question`, the same folding.
"""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Any

_WORDPIECE_CONTINUATION = re.compile(r"\s*##(?=\S)")
_WHITESPACE = re.compile(r"\s+")
_CJK = (
    r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002ebef\U0002f800-\U0002fa1f"
)
_SPACE_NEXT_TO_CJK = re.compile(rf" (?=[{_CJK}])|(?<=[{_CJK}]) ")
_TOKEN = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
YES_NO = ("yes", "no")  # normalised answers of closed questions under the `yesno` rule


def _is_punctuation(char: str) -> bool:
    """BERT's definition: ASCII non-alphanumeric printable characters plus every Unicode punctuation category."""
    return char in string.punctuation or unicodedata.category(char).startswith("P")


def normalize_answer(text: Any) -> str:
    """The canonical form answers are compared in (see the module docstring). Non-strings are str()-ed."""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    text = _WORDPIECE_CONTINUATION.sub("", text)
    text = "".join(" " if _is_punctuation(c) else c for c in text)
    text = _WHITESPACE.sub(" ", text).strip()
    return _SPACE_NEXT_TO_CJK.sub("", text)


# Questions are matched in the same folded form, so that the same question typed differently
# ("Is there a mass?" / "is there a mass") is one question.
normalize_question = normalize_answer


def answer_tokens(text: Any) -> list[str]:
    """The tokens of the normalised answer (the soft open scores): words, and each CJK character on its own."""
    return _TOKEN.findall(normalize_answer(text))
