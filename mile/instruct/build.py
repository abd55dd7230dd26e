"""Build instruction-format records (the MILE authors' format) from SLAKE and VQA-RAD splits.

Each question becomes one record:

    {"img_name": "vqa-rad/synpic54610.jpg", "qid": 1, "answer": "Yes",
     "question_pool": ["<image>Question:{Are regions of the brain infarcted?}Option:{(a)Yes; (b)No} ...", ...],
     "template_ids": [1, 2, 3, 4, 5, 6], "options": ["Yes", "No"], "question": "Are regions of ...?",
     "source": "vqa_rad", "split": "train", "answer_type": "CLOSED", "question_type": "PRES"}

The first four keys are the authors' format; the others are ours and are ignored by code that reads theirs.
`answer` is the target text (never the option letter). `question_pool[i]` was made by template
`template_ids[i]`: CLOSED questions get every template of the set, OPEN ones all but the `closed_only` ones.

Image names follow the authors' release, so one image folder serves both their files and ours: VQA-RAD images
are `vqa-rad/<image_name>` and SLAKE images keep SLAKE's own relative name (`xmlab1/source.jpg`). Lay the images
out as `<dir>/vqa-rad/*.jpg` + `<dir>/xmlab*/` or map the prefixes to the datasets' own folders when loading
(`mile.instruct.dataset.ImageRoots`).

Questions with an empty answer (SLAKE train has one) are left out: an empty option "(c)" and an empty target
teach nothing; the summary lists their ids. Options are seeded per record (see `mile.instruct.options`): the same inputs and seed give a byte-identical file.
`question_type` is the normalised label (upper case, VQA-RAD typos fixed, combined labels as "PRES, POS").
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mile.atomic import atomic_write_json
from mile.data.errors import DataError
from mile.data.records import DEFAULT_MAX_BAD_FRACTION, LoadResult
from mile.data.registry import load_dataset
from mile.data.sample import Sample
from mile.instruct.options import (
    DistractorPool,
    canonical_question_type,
    check_options,
    is_yes_no,
    make_options,
    seeded_rng,
)
from mile.instruct.templates import TemplateSet, load_templates

# registry name -> (source family, image folder under the dataset root, img_name prefix of the authors' release)
SOURCE_DATASETS: dict[str, tuple[str, str, str]] = {
    "slake": ("slake", "imgs", ""),
    "vqa_rad": ("vqa_rad", "images", "vqa-rad"),
    "vqa_rad_public": ("vqa_rad", "images", "vqa-rad"),
}


@dataclass(frozen=True)
class InstructionSource:
    """One dataset to convert: its registry name, its root, and optionally its own splits and loader options."""

    dataset: str
    root: str | os.PathLike[str]
    splits: tuple[str, ...] | None = None
    options: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dataset not in SOURCE_DATASETS:
            raise DataError(
                f"cannot build instruction data from dataset {self.dataset!r}; valid: {sorted(SOURCE_DATASETS)}"
            )

    @classmethod
    def parse(cls, text: str) -> InstructionSource:
        """From the CLI form `name=root` or `name:split1,split2=root`, e.g. `slake:train,validate=data/slake`."""
        name, sep, root = text.partition("=")
        if not sep or not name.strip() or not root.strip():
            raise DataError(f"instruction source {text!r}: expected NAME=ROOT or NAME:SPLIT[,SPLIT]=ROOT")
        dataset, _, split_text = name.strip().partition(":")
        splits = tuple(s.strip() for s in split_text.split(",") if s.strip()) or None
        return cls(dataset, root.strip(), splits)


def image_name(sample: Sample, dataset: str, root: str | os.PathLike[str]) -> str:
    """The record's `img_name` in the authors' scheme (see the module docstring)."""
    _, folder, prefix = SOURCE_DATASETS[dataset]
    images = Path(root).expanduser().resolve() / folder
    relative = sample.image.relative_to(images).as_posix()
    return f"{prefix}/{relative}" if prefix else relative


def instruction_record(
    sample: Sample, templates: TemplateSet, options: list[str], *, split: str, img_name: str
) -> dict[str, Any]:
    """One output record for `sample` with its (already drawn) options."""
    chosen = templates.for_answer_type(sample.answer_type)
    options_text = templates.options.render(options)
    return {
        "img_name": img_name,
        "qid": int(sample.id) if sample.id.isdigit() else sample.id,  # int ids stay ints, as in the sources
        "answer": sample.answer,
        "question_pool": [t.render(sample.question, options_text) for t in chosen],
        "template_ids": [t.id for t in chosen],
        "options": options,
        "question": sample.question,
        "source": sample.source,
        "split": split,
        "answer_type": sample.answer_type,
        "question_type": canonical_question_type(sample.question_type),
    }


def _part_summary(source: InstructionSource, split: str, result: LoadResult, records: list[dict]) -> dict:
    """Counts for one (dataset, split): what was converted, what was dropped and what the options look like."""
    per_template = Counter(t for r in records for t in r["template_ids"])
    return {
        "dataset": source.dataset,
        "root": str(Path(source.root).expanduser().resolve()),
        "split": split,
        "n_records": len(records),
        "n_closed": sum(r["answer_type"] == "CLOSED" for r in records),
        "n_open": sum(r["answer_type"] == "OPEN" for r in records),
        "n_prompts": sum(len(r["question_pool"]) for r in records),
        "prompts_per_template": {str(k): per_template[k] for k in sorted(per_template)},
        "options": {
            "yes_no": sum(is_yes_no(r["answer"]) for r in records),
            "by_count": {str(k): v for k, v in sorted(Counter(len(r["options"]) for r in records).items())},
        },
        "bad": {"n_bad": result.bad.n_bad, "counts": result.bad.counts, "summary": result.bad.summary()},
    }


def _check_unique(records: list[dict]) -> None:
    """Refuse repeated (source, qid) pairs: loaders key instruction samples by them, so overlapping inputs
    (e.g. VQA-RAD train and public) would otherwise lose records as duplicates when read back."""
    counts = Counter((r["source"], str(r["qid"])) for r in records)
    repeated = [f"{s}:{q}" for (s, q), n in counts.items() if n > 1]
    if repeated:
        raise DataError(
            f"{len(repeated)} question id(s) occur twice across the requested sources/splits, e.g. {repeated[:5]}; "
            "build overlapping splits (such as vqa_rad train and vqa_rad_public) into separate files"
        )


def build_part(
    source: InstructionSource,
    split: str,
    templates: TemplateSet,
    seed: int,
    max_bad_fraction: float | None = DEFAULT_MAX_BAD_FRACTION,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The records of one (dataset, split) and their summary; questions with an empty answer are skipped."""
    result = load_dataset(
        source.dataset, source.root, split, max_bad_fraction=max_bad_fraction, **dict(source.options)
    )
    usable = [s for s in result.samples if s.answer.strip()]
    pool = DistractorPool(usable)  # distractors come from the answers of this split
    records = []
    for sample in usable:
        rng = seeded_rng("options", seed, sample.source, split, sample.id)
        options = make_options(sample, pool, rng, templates.options.max_distractors)
        check_options(options, sample.answer)
        img_name = image_name(sample, source.dataset, source.root)
        records.append(instruction_record(sample, templates, options, split=split, img_name=img_name))
    summary = _part_summary(source, split, result, records)
    summary["skipped_empty_answer"] = [s.id for s in result.samples if not s.answer.strip()]
    return records, summary


def build_instruction_data(
    sources: Sequence[InstructionSource | str],
    splits: str | Sequence[str],
    out_path: str | os.PathLike[str],
    seed: int = 0,
    templates_file: str | os.PathLike[str] | None = None,
    *,
    max_bad_fraction: float | None = DEFAULT_MAX_BAD_FRACTION,
) -> dict[str, Any]:
    """Convert `splits` of each source into one instruction JSON list at `out_path` (written atomically).

    `sources` are `InstructionSource`s or CLI strings `name=root` / `name:split,split=root` (a source's own
    splits override `splits`). `templates_file` is a template file or built-in set name (default: the authors'
    six). Returns a JSON-ready summary: per (dataset, split) counts, totals, the template set and the output's
    SHA-256 (equal seeds and inputs give equal hashes).
    """
    templates = load_templates(templates_file)
    default_splits = (splits,) if isinstance(splits, str) else tuple(splits)
    records: list[dict[str, Any]] = []
    parts = []
    for item in sources:
        source = InstructionSource.parse(item) if isinstance(item, str) else item
        for split in source.splits or default_splits:
            part, summary = build_part(source, split, templates, seed, max_bad_fraction)
            records.extend(part)
            parts.append(summary)
    if not parts:
        raise DataError("no instruction sources given; expected at least one NAME=ROOT (slake, vqa_rad)")
    _check_unique(records)
    path = atomic_write_json(out_path, records)
    return {
        "out_path": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "seed": seed,
        "templates": {"name": templates.name, "file": templates.file, "ids": templates.ids},
        "n_records": len(records),
        "n_prompts": sum(len(r["question_pool"]) for r in records),
        "parts": parts,
    }
