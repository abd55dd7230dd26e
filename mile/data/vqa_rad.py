"""VQA-RAD (Lau et al., Scientific Data 2018), from the common train/test split or the original public file.

Layout under the root: `trainset.json` (3,064 records) and `testset.json` (451), records with `qid`, `image_name`,
`question`, `answer`, `answer_type`, `question_type`, `image_organ`, `phrase_type`; images in `images/`. The
original release `VQA_RAD_Dataset_Public.json` (2,248 records, more fields) is split `public`.

Quirks handled here: `answer_type` occurs as `"CLOSED "` (trailing space), so it is stripped and upper-cased and
anything but OPEN/CLOSED is a bad record; a few answers are JSON numbers (e.g. 4), which become text; one public
`qid` is the string "0" while the others are integers, so ids are always `str(qid)`.
"""

from __future__ import annotations

import os

from mile.data.images import DEFAULT_MAX_PIXELS
from mile.data.records import LoadResult, QidFormat

VQA_RAD = QidFormat(
    name="VQA-RAD",
    files={"train": "trainset.json", "test": "testset.json", "public": "VQA_RAD_Dataset_Public.json"},
    image_folder="images",
    image_key="image_name",
    question_type_key="question_type",
    source="vqa_rad",
    extra_keys=("image_organ", "phrase_type"),
    expected="fields qid, image_name, question, answer, answer_type (VQA-RAD format)",
)


def load_vqa_rad(
    root: str | os.PathLike[str],
    split: str = "train",
    *,
    verify_images: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadResult:
    """Load VQA-RAD split `train`, `test` or `public` (the original release file).

    `question_type` is VQA-RAD's own label (e.g. `PRES`, `POS`, or combined ones such as `PRES, POS`), kept as is.
    """
    return VQA_RAD.load(root, split, verify_images=verify_images, max_pixels=max_pixels)
