"""A simple format for users' own VQA data: JSON lines (`.jsonl`) or a JSON list (`.json`) of records.

Each record is a JSON object:

    {"image": "scans/0001.png", "question": "Is there a fracture?", "answer": "no",
     "id": "case1-q1", "answer_type": "CLOSED", "question_type": "ABN"}

- required: `image` (a path relative to the image root), `question` (non-empty string), `answer` (string; numbers
  are turned into text);
- optional: `id` (string or integer, unique in the file; default: the record's 0-based position), `answer_type`
  (`OPEN` or `CLOSED`, any case; default CLOSED when the answer is yes/no, else OPEN), `question_type` (string).
  Any other fields are kept in `Sample.extra`.

The image root is the file's own directory unless `image_root` is given. `root` may be the file itself or a
directory holding `<split>.jsonl` or `<split>.json`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from mile.data.errors import DataError
from mile.data.images import DEFAULT_MAX_PIXELS
from mile.data.paths import existing_dir, resolve_image_path
from mile.data.records import (
    LoadResult,
    collect_samples,
    get_answer,
    get_id,
    get_question,
    get_str,
    normalise_answer_type,
)
from mile.data.sample import Sample

SUFFIXES = (".jsonl", ".json")
_NON_WORD = re.compile(r"[\W_]+")
_KNOWN_KEYS = {"image", "question", "answer", "id", "answer_type", "question_type"}
_EXPECTED = (
    "required fields image, question, answer and optional id, answer_type, question_type (generic format)"
)


def find_generic_file(root: str | os.PathLike[str], split: str = "train") -> Path:
    """`root` itself when it is a file, else `<root>/<split>.jsonl` or `<root>/<split>.json`."""
    path = Path(root).expanduser()
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise DataError(
                f"{path}: unknown data file type {path.suffix!r}; expected one of {list(SUFFIXES)}"
            )
        return path.resolve()
    base = existing_dir(path, "generic dataset")
    for suffix in SUFFIXES:
        candidate = base / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    raise DataError(f"no file for split {split!r} in {base}: expected {split}.jsonl or {split}.json")


def default_answer_type(answer: str) -> str:
    """The answer type of a record without one: CLOSED for yes/no (the metrics' `yesno` rule), else OPEN."""
    return "CLOSED" if _NON_WORD.sub(" ", answer).strip().lower() in ("yes", "no") else "OPEN"


def load_generic(
    root: str | os.PathLike[str],
    split: str = "train",
    *,
    image_root: str | os.PathLike[str] | None = None,
    verify_images: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadResult:
    """Load a generic JSONL/JSON file (see the module docstring for the format)."""
    file = find_generic_file(root, split)
    images = existing_dir(image_root, "image") if image_root is not None else file.parent

    def parse(index: int, record: dict[str, Any]) -> Sample:
        sample_id = get_id(record, "id") if record.get("id") is not None else str(index)
        where = f"{file}, record {index} (id {sample_id})"
        answer = get_answer(record)
        raw_type = record.get("answer_type")
        return Sample(
            id=sample_id,
            image=resolve_image_path(images, get_str(record, "image"), where=where),
            question=get_question(record),
            answer=answer,
            answer_type=default_answer_type(answer) if raw_type is None else normalise_answer_type(raw_type),
            question_type=get_str(record, "question_type", required=False),
            source="generic",
            extra={key: value for key, value in record.items() if key not in _KNOWN_KEYS},
        )

    return collect_samples(
        file, parse, id_key="id", expected=_EXPECTED, verify_images=verify_images, max_pixels=max_pixels
    )
