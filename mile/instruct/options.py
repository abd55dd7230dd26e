"""Answer options for instruction prompts: yes/no opposites and same-type distractors, seeded per record.

The authors gave yes/no questions the truth and its opposite, and every other question the truth plus up to three
distractors drawn from answers to questions of the same type. We do the same with three rules that make the
options well-formed and the output reproducible:

- answers are compared after `mile.data.answers.normalize_answer`, so a distractor never equals the truth in
  another spelling ("Left Lung" vs "left lung") and the options hold no duplicates;
- distractors for a non-yes/no question are never "yes"/"no" nor empty (in VQA-RAD most PRES answers are yes/no;
  offering "yes" as an alternative to "CT" would teach nothing);
- each record's randomness comes from its own generator, seeded by (seed, source, split, id) through SHA-256, so a
  record's options do not depend on the order of the file or on Python's per-process string hashing.

Question types: SLAKE's `content_type` is clean; VQA-RAD's `question_type` mixes case ("Other" / "OTHER"), has
typos ("ATRIB", "PRSE") and combined labels ("PRES, POS"). `question_type_labels` upper-cases, fixes the two
typos and splits combined labels; a question with several labels draws from the answers of all its labels.
Groups never cross datasets.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence

from mile.data.answers import normalize_answer
from mile.data.sample import Sample

YES_NO_OPPOSITE = {"yes": "no", "no": "yes"}
LABEL_ALIASES = {"ATRIB": "ATTRIB", "PRSE": "PRES"}  # typos in VQA-RAD's question_type


def seeded_rng(*parts: object) -> random.Random:
    """A generator seeded from `parts` via SHA-256: the same parts give the same stream in every process."""
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def question_type_labels(label: str) -> tuple[str, ...]:
    """The normalised labels of a question type: "PRES, pos" -> ("PRES", "POS"); "" -> ("",)."""
    labels = []
    for part in label.split(","):
        name = part.strip().upper()
        name = LABEL_ALIASES.get(name, name)
        if name and name not in labels:
            labels.append(name)
    return tuple(labels) or ("",)


def canonical_question_type(label: str) -> str:
    """The label written into instruction records: normalised labels joined by ", " (e.g. "PRES, POS")."""
    return ", ".join(question_type_labels(label))


def is_yes_no(answer: str) -> bool:
    return normalize_answer(answer) in YES_NO_OPPOSITE


def opposite(answer: str) -> str:
    """The other of yes/no, in the truth's case style ("Yes" -> "No", "YES" -> "NO", "yes" -> "no")."""
    other = YES_NO_OPPOSITE[normalize_answer(answer)]
    text = answer.strip()
    if text.isupper():
        return other.upper()
    if text[:1].isupper():
        return other.capitalize()
    return other


class DistractorPool:
    """Candidate wrong answers per (source, question-type label), built once from all samples being converted.

    For each group we keep one spelling per normalised answer (the first in file order), excluding yes/no and
    empty answers. Candidates come back sorted by their normalised form, so only the seed decides the draw.
    """

    def __init__(self, samples: Iterable[Sample]) -> None:
        self._groups: dict[tuple[str, str], dict[str, str]] = {}
        for sample in samples:
            key = normalize_answer(sample.answer)
            if not key or key in YES_NO_OPPOSITE:
                continue
            for label in question_type_labels(sample.question_type):
                self._groups.setdefault((sample.source, label), {}).setdefault(key, sample.answer.strip())

    def candidates(self, sample: Sample) -> list[str]:
        """Distinct answers of the sample's groups other than its own truth (after normalisation)."""
        truth = normalize_answer(sample.answer)
        merged: dict[str, str] = {}
        for label in question_type_labels(sample.question_type):
            for key, text in self._groups.get((sample.source, label), {}).items():
                if key != truth:
                    merged.setdefault(key, text)
        return [merged[key] for key in sorted(merged)]


def make_options(sample: Sample, pool: DistractorPool, rng: random.Random, max_distractors: int) -> list[str]:
    """The shuffled options of one question; the truth (as written in the data) is always one of them."""
    truth = sample.answer.strip()
    if is_yes_no(truth):
        options = [truth, opposite(truth)]
    else:
        candidates = pool.candidates(sample)
        options = [truth, *rng.sample(candidates, min(max_distractors, len(candidates)))]
    rng.shuffle(options)
    return options


def check_options(options: Sequence[str], truth: str) -> None:
    """Internal invariant of `make_options`: truth present once, no two options equal after normalisation."""
    keys = [normalize_answer(o) for o in options]
    assert keys.count(normalize_answer(truth)) == 1 and len(set(keys)) == len(keys), (options, truth)
