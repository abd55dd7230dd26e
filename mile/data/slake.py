"""SLAKE 1.0 (Liu et al., ISBI 2021), read from its official split files.

Layout under the root: `train.json`, `validate.json`, `test.json` (lists of records with `qid`, `img_name` such as
`xmlab1/source.jpg`, `question`, `answer`, `answer_type` OPEN/CLOSED, `q_lang` en/zh, `content_type`, `location`,
`modality`, ...) and the images at `imgs/<img_name>`. Each file mixes English and Chinese questions; the paper uses
the English part, hence `language="en"` by default.
"""

from __future__ import annotations

import os
from typing import Any

from mile.data.errors import DataError
from mile.data.images import DEFAULT_MAX_PIXELS
from mile.data.records import BadRecordError, LoadResult, QidFormat, Reason, get_str

LANGUAGES = ("en", "zh", "all")
_RECORD_LANGUAGES = ("en", "zh")
SLAKE = QidFormat(
    name="SLAKE",
    files={"train": "train.json", "validate": "validate.json", "test": "test.json"},
    image_folder="imgs",
    image_key="img_name",
    question_type_key="content_type",
    source="slake",
    extra_keys=("q_lang", "location", "modality", "base_type", "img_id"),
    expected="fields qid, img_name, question, answer, answer_type, q_lang (SLAKE format)",
)


def load_slake(
    root: str | os.PathLike[str],
    split: str = "train",
    *,
    language: str = "en",
    verify_images: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadResult:
    """Load one SLAKE split. `language` keeps English (`en`), Chinese (`zh`) or `all` questions.

    Records of the other language are skipped, not counted as bad. `question_type` is SLAKE's `content_type`
    and the id is `str(qid)`. Bad records are counted in the result's `bad` report (see `mile.data.records`).
    """
    if language not in LANGUAGES:
        raise DataError(f"unknown SLAKE language filter language={language!r}; valid: {list(LANGUAGES)}")

    def keep(record: dict[str, Any]) -> bool:
        q_lang = get_str(record, "q_lang")
        if q_lang not in _RECORD_LANGUAGES:
            raise BadRecordError(
                Reason.BAD_VALUE, f"q_lang is {q_lang!r}, expected one of {_RECORD_LANGUAGES}"
            )
        return language in ("all", q_lang)

    return SLAKE.load(root, split, keep=keep, verify_images=verify_images, max_pixels=max_pixels)
