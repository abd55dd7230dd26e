"""Answer normalisation (mile.data.answers): BERT's punctuation rule, checked character by character against an
independent statement of it."""

import string
import unicodedata

from mile.data.answers import _is_punctuation, normalize_answer


def _bert_punctuation(char: str) -> bool:
    return char in string.punctuation or unicodedata.category(char).startswith("P")


def test_punctuation_is_bert_s_for_every_character_of_the_first_planes():
    wrong = [hex(c) for c in [*range(0x3000), *range(0x3000, 0x3040), *range(0xFF00, 0xFF70)]
             if _is_punctuation(chr(c)) != _bert_punctuation(chr(c))]  # fmt: skip
    assert wrong == []


def test_punctuation_splits_words_and_letters_digits_stay():
    assert normalize_answer("left-lung/right_lobe, (T2)!") == "left lung right lobe t2"
    assert normalize_answer("a`b~c^d|e") == "a b c d e"  # the ASCII symbols BERT counts as punctuation
