"""The data a run reads, from its config: training records (plus extra sources), evaluation splits, the
prompts instruction records show, and the checks that guard them (bad records, leaks, truncation)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from mile.config import Config, SourceSection
from mile.data.errors import DataError
from mile.data.records import BadRecords, LoadResult
from mile.engine.rundir import RunDir
from mile.instruct.dataset import PromptChooser
from mile.instruct.leaks import check_leaks, drop_leaks, find_leaks
from mile.instruct.registry import load_dataset
from mile.instruct.truncation import truncation_report
from mile.tokenizer import MileTokenizer


def demo_root() -> Path:
    return Path(str(resources.files("mile") / "resources" / "demo" / "vqa_rad"))


def _main_source(cfg: Config) -> SourceSection:
    d = cfg.data
    return SourceSection(
        dataset=d.dataset, root=d.root, split=d.train_split, language=d.language, options=d.options
    )


def load_source(source: SourceSection, split: str, cfg: Config) -> LoadResult:
    """One split of a source (`a+b` joins splits), refused when too many records are bad."""
    name, root = source.dataset, source.root
    if name == "demo":
        name, root = "vqa_rad", root or str(demo_root())
    if root is None:
        raise DataError(f"a root folder is required for dataset {source.dataset!r} (data.root)")
    options = dict(source.options)
    if name == "slake":
        options.setdefault("language", source.language)
    max_bad = cfg.data.max_bad_fraction
    parts = [load_dataset(name, root, part, max_bad_fraction=max_bad, **options) for part in split.split("+")]
    result = join(parts)
    if cfg.data.limit is not None:
        result.samples = result.samples[: cfg.data.limit]
    return result


def load_split(cfg: Config, split: str) -> LoadResult:
    """An evaluation split: from `data.eval_source` when set, else from the training dataset."""
    return load_source(cfg.data.eval_source or _main_source(cfg), split, cfg)


def load_train(cfg: Config) -> LoadResult:
    """The training records: the main split plus every `data.extra_train` source."""
    main = _main_source(cfg)
    return join(
        [load_source(main, main.split, cfg), *[load_source(s, s.split, cfg) for s in cfg.data.extra_train]]
    )


def join(parts: list[LoadResult]) -> LoadResult:
    if len(parts) == 1:
        return parts[0]
    ids = [s.id for p in parts for s in p.samples]
    if len(set(ids)) != len(ids):
        raise DataError(
            "the joined splits / sources share question ids; they cannot be told apart in predictions"
        )
    bad = BadRecords(
        file=Path(" + ".join(str(p.bad.file) for p in parts)),
        n_records=sum(p.bad.n_records for p in parts),
        items=[item for p in parts for item in p.bad.items],
    )
    return LoadResult([s for p in parts for s in p.samples], bad)


def has_prompts(result: LoadResult) -> bool:
    return any(s.extra.get("question_pool") for s in result.samples)


def prompt_chooser(cfg: Config, train: bool) -> PromptChooser:
    p = cfg.data.prompts
    mode = p.train if train else p.eval
    return PromptChooser(
        mode=mode, seed=cfg.train.seed, template_id=p.template_id if mode == "template" else None
    )


def guard_leaks(cfg: Config, train: LoadResult, evals: dict[str, LoadResult]) -> dict[str, Any]:
    """Instruction records that repeat an evaluation question (same image and question) are refused, dropped or
    allowed as `data.leaks` says; plain training data is only reported (standard splits overlap a little:
    16 of VQA-RAD's 451 test questions are also in its train split)."""
    report: dict[str, Any] = {}
    instruction = has_prompts(train)
    for split, data in evals.items():
        what = f"training data vs {split}"
        if instruction and cfg.data.leaks != "allow":
            leak = check_leaks(train.samples, data.samples, allow=cfg.data.leaks == "drop", what=what)
        else:
            leak = find_leaks(train.samples, data.samples)
        if instruction and cfg.data.leaks == "drop" and leak.n_leaked:
            train.samples = drop_leaks(train.samples, leak)
        report[split] = {**leak.to_dict(), "action": cfg.data.leaks if instruction else "report"}
    return report


def load_run_data(cfg: Config, tokenizer: MileTokenizer, run: RunDir, main_process: bool = True) -> dict:
    """Training and evaluation data of a run, refused when a split is empty, with their reports (bad records,
    leaks, prompt truncation) written into the run by the main process."""
    evals = {split: load_split(cfg, split) for split in cfg.data.eval_splits}
    splits = {"train": load_train(cfg)} if cfg.train.epochs else {}
    reports = {}
    for name, result in {**splits, **evals}.items():
        if not result.samples:
            raise DataError(
                f"{result.bad.file}: no usable records for the {name} split "
                f"({result.bad.n_records} read, {result.bad.n_bad} bad); check data.root and the split name"
            )
    if splits:
        reports["leaks.json"] = guard_leaks(cfg, splits["train"], evals)
        if not splits["train"].samples:
            dropped = sum(r["n_leaked"] for r in reports["leaks.json"].values())
            raise DataError(
                f"no training records left (data.leaks=drop removed {dropped} that repeat evaluation questions)"
            )
        if has_prompts(splits["train"]):  # how many instruction prompts exceed the question length limit
            reports["prompt_lengths.json"] = truncation_report(
                splits["train"].samples, tokenizer, tokenizer.max_question_len
            )
    splits.update(evals)
    reports["data_report.json"] = {name: result.bad.to_dict() for name, result in splits.items()}
    if main_process:
        for name, report in reports.items():
            run.write_json(name, report)
        run.log("data: " + ", ".join(f"{k} {len(v)} samples" for k, v in splits.items()))
    return splits
