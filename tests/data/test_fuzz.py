"""Fuzz the dataset parsers: any JSON a user might feed us gives a LoadResult or our own DataError, never a raw
KeyError / TypeError / AttributeError traceback."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

from data_builders import write_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mile.data.errors import DataError
from mile.data.records import LoadResult
from mile.data.registry import load_dataset

FIELDS = ["qid", "id", "img_name", "image_name", "image", "question", "answer", "answer_type", "q_lang"]
FIELDS += ["content_type", "question_type"]
# (registry name, split, file name under the root, image folder under the root)
LAYOUTS = [
    ("slake", "train", "train.json", "imgs"),
    ("vqa_rad", "train", "trainset.json", "images"),
    ("vqa_rad_public", "public", "VQA_RAD_Dataset_Public.json", "images"),
    ("generic", "train", "train.json", "."),
    ("jsonl", "train", "train.jsonl", "."),
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(
        ["", " ", "en", "zh", "OPEN", "CLOSED ", "closed", "yes", "a.png", "../x.png", "/etc/passwd"]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
)
records = st.dictionaries(st.sampled_from(FIELDS), json_values | scalars, max_size=len(FIELDS))
documents = st.one_of(json_values, st.lists(records | json_values, max_size=6), st.lists(records, max_size=6))


VALID = {
    "slake": {
        "qid": 1,
        "img_name": "a.png",
        "question": "Q?",
        "answer": "yes",
        "answer_type": "CLOSED",
        "q_lang": "en",
    },
    "vqa_rad": {"qid": 1, "image_name": "a.png", "question": "Q?", "answer": 2, "answer_type": "OPEN"},
    "generic": {"id": "x", "image": "a.png", "question": "Q?", "answer": "no"},
}
VALID["vqa_rad_public"] = VALID["vqa_rad"]
VALID["jsonl"] = VALID["generic"]


@st.composite
def mutated_records(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A valid record of dataset `name` with some fields deleted or replaced by arbitrary JSON."""
    record = dict(VALID[name])
    for key in draw(st.lists(st.sampled_from(sorted(record) + FIELDS), max_size=3)):
        if draw(st.booleans()):
            record.pop(key, None)
        else:
            record[key] = draw(json_values)
    return record


def _write(path: Path, document: Any) -> None:
    if path.suffix == ".jsonl" and isinstance(document, list):
        path.write_text("".join(json.dumps(item) + "\n" for item in document), encoding="utf-8")
    else:
        path.write_text(json.dumps(document), encoding="utf-8")


def _load(
    layout: tuple[str, str, str, str], document: Any, verify: bool, limit: float | None = 0.5
) -> LoadResult | None:
    name, split, file_name, images = layout
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_image(root / images / "a.png", fmt="PNG")
        (root / images / "empty.png").write_bytes(b"")
        _write(root / file_name, document)
        try:
            return load_dataset(name, root, split, verify_images=verify, max_bad_fraction=limit)
        except DataError as exc:
            assert str(exc)  # a message for the user
            return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=st.sampled_from(LAYOUTS), document=documents, verify=st.booleans())
def test_any_json_gives_a_result_or_a_data_error(layout: tuple, document: Any, verify: bool) -> None:
    result = _load(layout, document, verify)
    if result is not None:
        assert result.bad.n_records == len(result.samples) + result.bad.n_bad
        assert all(s.answer_type in ("OPEN", "CLOSED") for s in result.samples)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), layout=st.sampled_from(LAYOUTS), verify=st.booleans())
def test_mutated_valid_records_are_kept_or_counted(data: st.DataObject, layout: tuple, verify: bool) -> None:
    document = data.draw(st.lists(mutated_records(layout[0]), min_size=1, max_size=5))
    result = _load(layout, document, verify, limit=None)
    assert result is not None  # lists of objects never fail as a whole: each record is kept or counted
    assert result.bad.n_records == len(result.samples) + result.bad.n_bad
    for sample in result.samples:
        assert (
            sample.image.name in ("a.png", "empty.png")
            and sample.question
            and sample.answer_type in ("OPEN", "CLOSED")
        )


@settings(max_examples=50, deadline=None)
@given(layout=st.sampled_from(LAYOUTS), text=st.text(max_size=40) | st.binary(max_size=40).map(repr))
def test_any_text_gives_a_result_or_a_data_error(layout: tuple, text: str) -> None:
    name, split, file_name, images = layout
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / file_name).write_text(text, encoding="utf-8", errors="surrogatepass")
        with contextlib.suppress(DataError):
            load_dataset(name, tmp, split)
