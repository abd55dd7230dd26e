"""Read instruction-format records (ours or the MILE authors' release as published) into `Sample`s.

The authors' records are `{"img_name", "qid", "answer", "question_pool"}` with `answer` sometimes a JSON number and
`img_name` like `vqa-rad/synpic54610.jpg` (VQA-RAD) or SLAKE's own `xmlab1/source.jpg`. Ours add `question`,
`template_ids`, `source`, `answer_type`, ... (see `mile.instruct.build`). Both load here:

- images resolve through `ImageRoots`: either one folder holding everything as named (the authors' layout), or a
  mapping prefix -> folder such as `{"vqa-rad": ".../vqa_rad/images", "slake": ".../slake/imgs"}`, where a name
  whose first component is not a configured prefix (SLAKE's `xmlab1/...`) goes to the `default` root ("slake").
  Resolution goes through `mile.data.paths`, so `..`, absolute paths and symlinks cannot leave the root.
- `Sample.question` is the plain question: the record's `question`, else the question recovered from a prompt
  by matching the template set, else the first prompt. `extra["question_pool"]` and `extra["template_ids"]` keep
  the prompts and which template made each (None where no template matches).
- `Sample.id` is `<source>:<qid>` (sources: `vqa_rad`, `slake`), because SLAKE and VQA-RAD qids overlap and a
  combined file must not lose records as duplicates.
- Without an `answer_type` field a record is CLOSED when one of its prompts comes from a closed-only template
  (the authors gave only closed questions the "judgmental answer" prompt), else by the yes/no rule.

Bad records are counted by reason in the `LoadResult`, as for every other loader. `PromptChooser` picks the
prompt the model sees: a seeded draw per (epoch, record) for training, a fixed template or the plain question for
evaluation; it fits `mile.engine.batches.VQADataset(prompts=...)`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mile.data.errors import DataError
from mile.data.generic import default_answer_type, find_generic_file
from mile.data.images import DEFAULT_MAX_PIXELS
from mile.data.paths import existing_dir, resolve_image_path
from mile.data.records import (
    BadRecordError,
    LoadResult,
    Reason,
    collect_samples,
    get_answer,
    get_field,
    get_id,
    get_str,
    normalise_answer_type,
)
from mile.data.sample import Sample
from mile.instruct.options import seeded_rng
from mile.instruct.templates import TemplateSet, load_templates

PREFIX_SOURCES = {"vqa-rad": "vqa_rad", "slake": "slake"}  # img_name prefix -> Sample.source
_EXPECTED = "fields img_name, qid, answer, question_pool (instruction format)"
_EXTRA_KEYS = ("options", "split")


def _canon(prefix: str) -> str:
    """Prefixes compare case- and separator-insensitively: "vqa_rad", "VQA-RAD" and "vqa-rad" are one."""
    return prefix.strip().strip("/").replace("_", "-").lower()


class ImageRoots:
    """Where instruction images live: one folder for all names, or a mapping prefix -> folder plus a default."""

    def __init__(
        self,
        roots: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
        default: str | None = "slake",
    ) -> None:
        self.default = _canon(default) if default else None
        if isinstance(roots, Mapping):
            if not roots:
                raise DataError(
                    "image_roots is an empty mapping; expected e.g. {'vqa-rad': DIR, 'slake': DIR}"
                )
            self.single: Path | None = None
            self.roots = {_canon(k): existing_dir(v, f"instruction image ({k!r})") for k, v in roots.items()}
        else:
            self.single = existing_dir(roots, "instruction image")
            self.roots = {}

    def resolve(self, img_name: str, where: str = "") -> tuple[str, Path]:
        """(root key, safe absolute path) of `img_name`; PathEscapeError / BadRecordError for bad names."""
        head, sep, rest = img_name.partition("/")
        key = _canon(head) if sep else ""
        if self.single is not None:
            found = key if key in PREFIX_SOURCES else (self.default or "")
            return found, resolve_image_path(self.single, img_name, where=where)
        if key in self.roots:
            return key, resolve_image_path(self.roots[key], rest, where=where)
        if self.default in self.roots:
            return self.default, resolve_image_path(self.roots[self.default], img_name, where=where)
        raise BadRecordError(
            Reason.BAD_VALUE,
            f"img_name {img_name!r}: no image root for prefix {head!r}; configured prefixes "
            f"{sorted(self.roots)}, default root {self.default!r} (not configured)",
        )


def _question_pool(record: dict[str, Any]) -> list[str]:
    pool = get_field(record, "question_pool")
    if not isinstance(pool, list):
        raise BadRecordError(Reason.WRONG_TYPE, f"question_pool should be a list, got {type(pool).__name__}")
    if not pool:
        raise BadRecordError(Reason.EMPTY_QUESTION, "question_pool is empty")
    for i, prompt in enumerate(pool):
        if not isinstance(prompt, str):
            raise BadRecordError(Reason.WRONG_TYPE, f"question_pool[{i}] should be a string, got {prompt!r}")
        if not prompt.strip():
            raise BadRecordError(Reason.EMPTY_QUESTION, f"question_pool[{i}] is empty")
    return pool


def _template_ids(record: dict[str, Any], pool: list[str], templates: TemplateSet) -> list[int | None]:
    """The record's own `template_ids`, else the id of the template each prompt matches (None: no match)."""
    ids = record.get("template_ids")
    if ids is None:
        return [(found[0].id if (found := templates.match(p)) else None) for p in pool]
    if not isinstance(ids, list) or len(ids) != len(pool) or not all(type(i) is int for i in ids):
        raise BadRecordError(
            Reason.WRONG_TYPE, f"template_ids should be a list of {len(pool)} integers, got {ids!r}"
        )
    return ids


def _plain_question(record: dict[str, Any], pool: list[str], templates: TemplateSet) -> tuple[str, bool]:
    """(question, known): the record's question, else one recovered from a prompt, else the first prompt."""
    question = get_str(record, "question", required=False)
    if question:
        return question, True
    for prompt in pool:
        found = templates.match(prompt)
        if found and found[1].strip():
            return found[1].strip(), True
    return pool[0], False


def _answer_type(record: dict[str, Any], ids: list[int | None], templates: TemplateSet, answer: str) -> str:
    if record.get("answer_type") is not None:
        return normalise_answer_type(record["answer_type"])
    known = [t for t in templates.templates if t.id in ids]
    if known:
        return "CLOSED" if any(t.closed_only for t in known) else "OPEN"
    return default_answer_type(answer)


def load_instruction(
    root: str | os.PathLike[str],
    split: str = "train",
    *,
    image_roots: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]] | None = None,
    default_root: str | None = "slake",
    templates: str | os.PathLike[str] | TemplateSet | None = None,
    verify_images: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadResult:
    """Load an instruction file: `root` is the `.json`/`.jsonl` file or a folder with `<split>.json(l)`.

    `image_roots`: one folder or a prefix -> folder mapping (default: the file's folder); `default_root`: the
    prefix whose folder serves names without a configured prefix; `templates`: the set used to recover plain
    questions and template ids from prompts (default: the authors' six).
    """
    file = find_generic_file(root, split)
    roots = ImageRoots(file.parent if image_roots is None else image_roots, default_root)
    template_set = templates if isinstance(templates, TemplateSet) else load_templates(templates)

    def parse(index: int, record: dict[str, Any]) -> Sample:
        qid = get_id(record, "qid")
        img_name = get_str(record, "img_name")
        key, image = roots.resolve(img_name, where=f"{file}, record {index} (qid {qid})")
        answer = get_answer(record)
        pool = _question_pool(record)
        ids = _template_ids(record, pool, template_set)
        question, known = _plain_question(record, pool, template_set)
        source = get_str(record, "source", required=False) or PREFIX_SOURCES.get(key, key or "instruct")
        extra = {name: record[name] for name in _EXTRA_KEYS if name in record}
        extra.update(
            qid=record["qid"], img_name=img_name, question_pool=pool, template_ids=ids, question_known=known
        )
        return Sample(
            id=f"{source}:{qid}",
            image=image,
            question=question,
            answer=answer,
            answer_type=_answer_type(record, ids, template_set, answer),
            question_type=get_str(record, "question_type", required=False),
            source=source,
            extra=extra,
        )

    return collect_samples(
        file, parse, id_key="qid", expected=_EXPECTED, verify_images=verify_images, max_pixels=max_pixels
    )


@dataclass(frozen=True)
class PromptChooser:
    """The question text the model sees for sample `index` in `epoch`: `chooser(index, sample, epoch)`.

    - `random` (training): one prompt of the sample's pool, drawn from a generator seeded by (seed, epoch, index),
      so an epoch is the same after a resume and in every DataLoader worker;
    - `template` (evaluation): the prompt made by template `template_id`; a sample without one (OPEN questions
      have no closed-only prompt) gets its plain question, or an error with `fallback="error"`;
    - `question`: the plain question (what the non-instruction baselines see).
    Samples without a pool (plain datasets) always get their question.
    """

    mode: Literal["random", "template", "question"] = "random"
    seed: int = 0
    template_id: int | None = None
    fallback: Literal["question", "error"] = "question"

    def __post_init__(self) -> None:
        if self.mode not in ("random", "template", "question"):
            raise ValueError(f"unknown prompt mode {self.mode!r}; valid: ['random', 'template', 'question']")
        if self.fallback not in ("question", "error"):
            raise ValueError(f"unknown prompt fallback {self.fallback!r}; valid: ['question', 'error']")
        if (self.mode == "template") != (self.template_id is not None):
            raise ValueError(
                f"template_id is required with mode='template' and only then (got {self.template_id!r})"
            )

    def __call__(self, index: int, sample: Sample, epoch: int) -> str:
        pool = sample.extra.get("question_pool")
        if self.mode == "question" or not pool:
            return sample.question
        if self.mode == "random":
            return pool[seeded_rng("prompt", self.seed, epoch, index).randrange(len(pool))]
        ids = sample.extra.get("template_ids") or []
        if self.template_id in ids:
            return pool[ids.index(self.template_id)]
        if self.fallback == "error":
            raise DataError(
                f"sample {sample.id!r} has no prompt of template {self.template_id}; its ids: {ids}"
            )
        return sample.question
