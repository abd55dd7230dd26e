"""What every dataset loader returns: the valid samples plus an account of the records it had to drop.

Public medical VQA files contain a few odd records (a trailing space in a label, a number where a string was
expected, an image that is missing from the archive). Crashing on the first one makes the data unusable; silently
dropping them makes numbers irreproducible. So each loader keeps the valid `Sample`s, counts every dropped record by
reason with its id, and `check_bad_fraction` turns "too many dropped" into a clear error. Shape errors that mean
the file is not the format we expect at all (invalid JSON, top level not a list, a record that is not an object)
are raised at once as `DataError`: there is nothing sensible to count.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from mile.data.errors import DataError, ImageError, PathEscapeError
from mile.data.images import DEFAULT_MAX_PIXELS, check_image
from mile.data.paths import existing_dir, resolve_image_path, split_file
from mile.data.sample import Sample

DEFAULT_MAX_BAD_FRACTION = 0.05
ANSWER_TYPES = ("OPEN", "CLOSED")


class Reason(str, Enum):
    """Why a record was dropped. The string values appear in reports and run directories."""

    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_VALUE = "bad_value"
    EMPTY_QUESTION = "empty_question"
    DUPLICATE_ID = "duplicate_id"
    MISSING_IMAGE = "missing_image"
    CORRUPT_IMAGE = "corrupt_image"
    PATH_ESCAPE = "path_escape"


class BadRecordError(Exception):
    """Internal signal from a record parser: this record is bad for `reason`. Never escapes a loader."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class BadRecord:
    """One dropped record: its 0-based position in the file, its id (or `#<index>`), why, and details."""

    index: int
    id: str
    reason: Reason
    detail: str


@dataclass
class BadRecords:
    """The dropped records of one file. `n_records` counts the records considered (valid + bad, after filters)."""

    file: Path
    n_records: int = 0
    items: list[BadRecord] = field(default_factory=list)

    @property
    def n_bad(self) -> int:
        return len(self.items)

    @property
    def fraction(self) -> float:
        """Bad records over records considered; 0.0 for an empty file (nothing was dropped)."""
        return self.n_bad / self.n_records if self.n_records else 0.0

    @property
    def counts(self) -> dict[str, int]:
        """Number of dropped records per reason (reason value -> count)."""
        return dict(Counter(item.reason.value for item in self.items))

    def ids(self, reason: Reason | str | None = None) -> list[str]:
        """Ids of the dropped records, optionally only those dropped for `reason`."""
        wanted = None if reason is None else Reason(reason)
        return [item.id for item in self.items if wanted is None or item.reason is wanted]

    def summary(self, max_examples: int = 5) -> str:
        """One human-readable paragraph: file, counts by reason and a few examples."""
        head = f"{self.file}: {self.n_bad} of {self.n_records} records dropped ({self.fraction:.2%})"
        if not self.items:
            return head
        counts = ", ".join(f"{reason}={n}" for reason, n in sorted(self.counts.items()))
        examples = "; ".join(
            f"id {item.id!r} (record {item.index}): {item.reason.value}: {item.detail}"
            for item in self.items[:max_examples]
        )
        return f"{head} [{counts}]; e.g. {examples}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready report, e.g. for a run directory."""
        return {
            "file": str(self.file),
            "n_records": self.n_records,
            "n_bad": self.n_bad,
            "counts": self.counts,
            "items": [
                {"index": b.index, "id": b.id, "reason": b.reason.value, "detail": b.detail}
                for b in self.items
            ],
        }


@dataclass
class LoadResult:
    """The valid samples of one split file and the report of the records dropped from it."""

    samples: list[Sample]
    bad: BadRecords

    def __len__(self) -> int:
        return len(self.samples)

    def check(self, max_bad_fraction: float | None = DEFAULT_MAX_BAD_FRACTION) -> LoadResult:
        """Raise `DataError` when too many records were dropped (see `check_bad_fraction`); return self."""
        check_bad_fraction(self.bad, max_bad_fraction)
        return self


def check_bad_fraction(bad: BadRecords, max_bad_fraction: float | None = DEFAULT_MAX_BAD_FRACTION) -> None:
    """Raise `DataError` when the fraction of dropped records exceeds `max_bad_fraction` (None: never).

    A few bad records are normal in public data; many usually mean a wrong root, split or format, which the
    user should hear about instead of training on the remainder.
    """
    if max_bad_fraction is None:
        return
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise DataError(f"max_bad_fraction must be in [0, 1] (or None to disable), got {max_bad_fraction!r}")
    if bad.fraction > max_bad_fraction:
        raise DataError(
            f"too many bad records: {bad.summary()}; the limit max_bad_fraction is {max_bad_fraction:.2%}. "
            "Check the dataset root, split and format, or raise max_bad_fraction."
        )


# ---- reading files -------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc


def read_json_list(path: Path) -> list[Any]:
    """Read a JSON file whose top level must be a list; any other shape is a `DataError` naming the file."""
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(data, list):
        raise DataError(
            f"{path}: expected a JSON list of records at the top level, got {type(data).__name__}"
        )
    return data


def read_jsonl(path: Path) -> list[Any]:
    """Read a JSON-lines file (one JSON value per line, blank lines ignored); bad lines name file and line."""
    records = []
    for line_no, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {line_no}: not valid JSON ({exc})") from exc
    return records


def read_records(path: Path) -> list[Any]:
    """The records of a `.jsonl` file (`read_jsonl`) or of any other JSON file (`read_json_list`)."""
    return read_jsonl(path) if path.suffix == ".jsonl" else read_json_list(path)


# ---- field helpers for record parsers ---------------------------------------------------------------------------


def get_field(record: dict[str, Any], key: str) -> Any:
    """The value of `key`; a missing key or JSON null is a MISSING_FIELD bad record."""
    value = record.get(key)
    if value is None:
        raise BadRecordError(Reason.MISSING_FIELD, f"field {key!r} is missing or null")
    return value


def get_str(record: dict[str, Any], key: str, *, required: bool = True, default: str = "") -> str:
    """A stripped string field. Absent and optional gives `default`; any non-string is WRONG_TYPE."""
    if not required and record.get(key) is None:
        return default
    value = get_field(record, key)
    if not isinstance(value, str):
        raise BadRecordError(
            Reason.WRONG_TYPE, f"field {key!r} should be a string, got {type(value).__name__}"
        )
    return value.strip()


def get_question(record: dict[str, Any], key: str = "question") -> str:
    """The question text, which must be a non-empty string."""
    question = get_str(record, key)
    if not question:
        raise BadRecordError(Reason.EMPTY_QUESTION, f"field {key!r} is empty")
    return question


def get_answer(record: dict[str, Any], key: str = "answer") -> str:
    """The answer as a stripped string. Numbers (VQA-RAD has a few, e.g. 4) become text; other types are bad.

    An empty answer string is kept: it is the dataset's label (SLAKE train has one) and the metrics handle it.
    """
    value = get_field(record, key)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRecordError(
            Reason.WRONG_TYPE, f"field {key!r} should be a string or number, got {type(value).__name__}"
        )
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRecordError(Reason.BAD_VALUE, f"field {key!r} is {value!r}")
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip()


def get_id(record: dict[str, Any], key: str) -> str:
    """The record id as a string (JSON ints and strings both occur, e.g. VQA-RAD public has qid "0")."""
    value = get_field(record, key)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRecordError(
            Reason.WRONG_TYPE, f"field {key!r} should be a string or integer, got {type(value).__name__}"
        )
    text = str(value).strip()
    if not text:
        raise BadRecordError(Reason.BAD_VALUE, f"field {key!r} is an empty string")
    return text


def normalise_answer_type(value: Any, key: str = "answer_type") -> str:
    """'OPEN' or 'CLOSED' after stripping and upper-casing (VQA-RAD has 'CLOSED ' with a trailing space)."""
    if not isinstance(value, str):
        raise BadRecordError(
            Reason.WRONG_TYPE, f"field {key!r} should be a string, got {type(value).__name__}"
        )
    normalised = value.strip().upper()
    if normalised not in ANSWER_TYPES:
        raise BadRecordError(Reason.BAD_VALUE, f"field {key!r} is {value!r}, expected one of {ANSWER_TYPES}")
    return normalised


def display_id(record: dict[str, Any], key: str, index: int) -> str:
    """A record's id for reports, falling back to `#<index>` when the id itself is missing or malformed."""
    try:
        return get_id(record, key)
    except BadRecordError:
        return f"#{index}"


# ---- the common loop ----------------------------------------------------------------------------------------------

Parser = Callable[[int, dict[str, Any]], "Sample | None"]


def _image_problem(path: Path, verify: bool, max_pixels: int) -> BadRecordError | None:
    if not path.is_file():
        return BadRecordError(Reason.MISSING_IMAGE, f"image file {path} does not exist")
    if verify:
        try:
            check_image(path, max_pixels=max_pixels)
        except ImageError as exc:
            return BadRecordError(Reason.CORRUPT_IMAGE, str(exc))
    return None


def collect_samples(
    file: Path,
    parse: Parser,
    *,
    id_key: str,
    expected: str,
    verify_images: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadResult:
    """Run `parse` over the records of `file` (`read_records`), keeping valid samples and counting bad ones.

    `parse(index, record)` returns a Sample, None for a record filtered out on purpose (e.g. another language),
    or raises `BadRecordError` / `PathEscapeError`. Here we add the checks every format shares: each record is a
    JSON object (`expected` describes its fields for the error), ids are unique, the image file exists and, with
    `verify_images` (the default), decodes fully: every image is opened once (about 1 ms each; SLAKE's 546 take
    0.5 s), so a truncated or unreadable file is a bad record here, not an error mid-epoch or mid-evaluation.
    """
    bad = BadRecords(file=file)
    samples: list[Sample] = []
    ids: set[str] = set()
    image_problems: dict[Path, BadRecordError | None] = {}  # many questions share one image: check it once
    for index, record in enumerate(read_records(file)):
        if not isinstance(record, dict):
            raise DataError(
                f"{file}: record {index} is a JSON {type(record).__name__}, expected an object with {expected}"
            )
        try:
            sample = parse(index, record)
            if sample is None:
                continue
            if sample.id in ids:
                raise BadRecordError(Reason.DUPLICATE_ID, f"id {sample.id!r} occurs earlier in the file")
            if sample.image not in image_problems:
                image_problems[sample.image] = _image_problem(sample.image, verify_images, max_pixels)
            if image_problems[sample.image] is not None:
                raise image_problems[sample.image]
        except BadRecordError as exc:
            bad.items.append(BadRecord(index, display_id(record, id_key, index), exc.reason, exc.detail))
        except PathEscapeError as exc:
            bad.items.append(
                BadRecord(index, display_id(record, id_key, index), Reason.PATH_ESCAPE, str(exc))
            )
        else:
            ids.add(sample.id)
            samples.append(sample)
        bad.n_records += 1
    return LoadResult(samples=samples, bad=bad)


@dataclass(frozen=True)
class QidFormat:
    """A SLAKE / VQA-RAD style dataset: JSON-list split `files` under the root, records with `qid`, an
    image name (`image_key`) under `image_folder`, `question`, `answer`, `answer_type`, an optional question
    type and the `extra_keys` kept as they are. `name` names the dataset in errors."""

    name: str
    files: dict[str, str]
    image_folder: str
    image_key: str
    question_type_key: str
    source: str
    extra_keys: tuple[str, ...]
    expected: str

    def load(
        self,
        root: str | os.PathLike[str],
        split: str,
        *,
        keep: Callable[[dict[str, Any]], bool] | None = None,
        verify_images: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> LoadResult:
        """Load one split; `keep(record)` false skips a record on purpose (it may raise `BadRecordError`)."""
        base = existing_dir(root, self.name)
        file = split_file(base, split, self.files, self.name)
        images = base / self.image_folder

        def parse(index: int, record: dict[str, Any]) -> Sample | None:
            if keep is not None and not keep(record):
                return None
            qid = get_id(record, "qid")
            where = f"{file}, record {index} (qid {qid})"
            return Sample(
                id=qid,
                image=resolve_image_path(images, get_str(record, self.image_key), where=where),
                question=get_question(record),
                answer=get_answer(record),
                answer_type=normalise_answer_type(get_field(record, "answer_type")),
                question_type=get_str(record, self.question_type_key, required=False),
                source=self.source,
                extra={key: record[key] for key in self.extra_keys if key in record},
            )

        return collect_samples(
            file,
            parse,
            id_key="qid",
            expected=self.expected,
            verify_images=verify_images,
            max_pixels=max_pixels,
        )
