"""The one record type every dataset yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One question about one image.

    `image` is an absolute path that has already been checked to lie inside the dataset root.
    `answer_type` is normalised to "OPEN" or "CLOSED"; `question_type` is the dataset's own label
    (VQA-RAD `question_type`, SLAKE `content_type`) or "" when the dataset has none.
    """

    id: str
    image: Path
    question: str
    answer: str
    answer_type: str
    question_type: str = ""
    source: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)
