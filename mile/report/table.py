"""The paper's table: `ViT | JTM | Dec | Rank | #Params | Memory | Open | Closed | Global`, plus time, samples/s,
seeds and n. Runs identical up to `train.seed` are one row: accuracies as mean ± sample std over the seeds.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mile.config import INFERENCES
from mile.errors import MileError
from mile.sweep.naming import config_leaves, format_value, varying_keys
from mile.tuning.base import TOWERS
from mile.tuning.notation import format_token

from .collect import CorruptFile, RunRecord, dig, relative

RULES = {
    "yesno": "closed = questions whose ground truth is yes/no (rule `yesno`, as the paper's Tables 1-4)",
    "answer_type": "closed = the dataset's CLOSED label (rule `answer_type`)",
}
GROUPS = ("open", "closed", "global")
# `mile probe`'s gaps shown in the table: column key -> path in probe.json. The closed questions' image gap is
# apart because a model can read the image for open questions and answer every closed one from the prior.
PROBED = {
    "image": ("gap", "image"),
    "image_closed": ("by_answer_type", "closed", "gap", "image"),
    "question": ("gap", "question"),
}
CREDITS = {
    "slake": "SLAKE 1.0 (Liu et al., ISBI 2021; CC BY 4.0)",
    "vqa_rad": "VQA-RAD (Lau et al., Scientific Data 2018; CC0)",
}
_RANK = re.compile(r"_r(\d+)(?=_|\+|$)")
_SEED_SUFFIX = re.compile(r"-s\d+$")
# How a row's Setting is written: `config`, the config keys that differ between rows (e.g. lr=1e-4); `dir`, the
# run directories' names without a trailing -s<seed> (plain, plain-s2 -> plain), for hand-named runs whose
# configs differ in many keys at once (the instruction workflows).
LABELS = ("config", "dir")


@dataclass
class Row:
    """One table row: one config, aggregated over its seeds."""

    runs: list[RunRecord]
    split: str
    towers: tuple[str, str, str]
    rank: str
    plan: str
    setting: str
    params_pct: float | None
    trainable: int | None
    total: int | None
    memory_mb: float | None
    memory_kind: str | None
    acc: dict[str, tuple[float | None, float | None]]  # group -> (mean %, std % or None)
    n: dict[str, int | None]
    wall_s: float | None
    samples_per_s: float | None
    stored_mb: float | None  # what a run must keep for its task (its weights/), MB
    open_recall: float | None
    open_f1: float | None
    gaps: dict[str, tuple[float | None, float | None]]  # probe: input -> (mean, std) loss rise in nats/token
    inference: str = ""  # whose answers: generate / rank ("" for a row that trains nothing)

    @property
    def seeds(self) -> list[int]:
        return [r.config.train.seed for r in self.runs]

    @property
    def label(self) -> str:
        return f"{self.plan} {self.setting}".strip()


class ReportError(MileError, ValueError):
    """A report asked for with a rule or label that does not exist."""


def check_choices(rule: str, label: str, inference: str | None = None) -> None:
    if inference not in (None, *INFERENCES):
        raise ReportError(f"unknown inference mode {inference!r}; valid: {list(INFERENCES)}")
    if rule not in RULES:
        raise ReportError(f"unknown closed-question rule {rule!r}; valid rules: {list(RULES)}")
    if label not in LABELS:
        raise ReportError(f"unknown setting label {label!r}; valid labels: {list(LABELS)}")


def build_rows(
    records: list[RunRecord],
    split: str | None,
    rule: str,
    label: str = "config",
    inference: str | None = None,
) -> tuple[list[Row], list[tuple[RunRecord, str]]]:
    """Rows (sorted by setting, then trainable %) and the done runs left out, with the reason. `inference`
    (generate / rank) tabulates each run's answers of that mode; None, those of its own eval.inference."""
    check_choices(rule, label, inference)
    groups: dict[str, list[tuple[RunRecord, dict]]] = {}
    left_out = []
    # seeds pool; so do runs whose own eval.inference differs when one mode's answers are tabulated
    pooled = {"train.seed"} | ({"eval.inference"} if inference else set())
    for record in records:
        chosen = split or record.first_split
        try:
            metrics = record.metrics(chosen, inference) if chosen else None
            record.probe(chosen or "")  # read now: a corrupt probe.json leaves the run out, not the report
        except CorruptFile as exc:
            left_out.append((record, str(exc)))
            continue
        if metrics is None:
            where = record.answers(chosen or "", inference)
            hint = f" (mile eval {record.path} --inference {inference})" if where != f"eval/{chosen}" else ""
            left_out.append((record, f"no {where}/metrics.json{hint}"))
            continue
        leaves = {k: v for k, v in run_leaves(record).items() if k not in pooled}
        key = json.dumps({"split": chosen, **leaves}, sort_keys=True, default=str)
        groups.setdefault(key, []).append((record, metrics))
    firsts = [run_leaves(members[0][0]) for members in groups.values()]
    varying = [k for k in varying_keys(firsts) if not k.startswith("plan.") and k not in pooled]
    rows = [_row(members, split, rule, varying) for members in groups.values()]
    for row in rows:
        row.inference = inference or "/".join(sorted({r.config.eval.inference for r in row.runs}))
    if label == "dir":
        for row in rows:
            row.setting = " / ".join(dict.fromkeys(_SEED_SUFFIX.sub("", r.path.name) for r in row.runs))
    rows.sort(key=lambda r: (r.setting, r.params_pct if r.params_pct is not None else 1e9, r.plan))
    return rows, left_out


def run_leaves(record: RunRecord) -> dict:
    """A run's config leaves, with the precision it trained in (train_stats.json) in place of the request
    (`auto` is bf16 on one machine and fp32 on another: such runs are not seeds of one row)."""
    leaves = config_leaves(record.config)
    if record.stats.get("precision"):
        leaves["train.mixed_precision"] = record.stats["precision"]
    return leaves


def _row(members: list[tuple[RunRecord, dict]], split: str | None, rule: str, varying: list[str]) -> Row:
    members.sort(key=lambda m: m[0].config.train.seed)
    runs = [m[0] for m in members]
    cfg, params = runs[0].config, runs[0].params or {}
    tokens = tuple(format_token(cfg.plan.tower(t), t) for t in TOWERS)
    ranks = sorted({str(_lora_rank(cfg.plan.tower(t))) for t in TOWERS} - {"None"}, key=int)
    leaves = run_leaves(runs[0])
    acc, n = {}, {}
    for group in GROUPS:
        cells = [_cell(metrics, rule, group) for _, metrics in members]
        acc[group] = _mean_std([100 * a for a, _ in cells if a is not None])
        n[group] = cells[0][1]
    memory, kind = _memory(runs)
    soft = [m.get("open_soft") or {} for _, m in members]
    probes = [r.probe(split or r.first_split or "") or {} for r in runs]
    gaps = {
        k: _mean_std([v for v in (dig(p, path) for p in probes) if isinstance(v, (int, float))])
        for k, path in PROBED.items()
    }
    return Row(
        runs=runs,
        split=split or runs[0].first_split or "",
        towers=tuple(_RANK.sub("", tok) for tok in tokens),  # the rank goes to its own column
        rank="/".join(ranks) or "-",
        plan=cfg.plan.notation(),
        setting=", ".join(f"{k.rsplit('.', 1)[-1]}={format_value(leaves.get(k))}" for k in varying),
        params_pct=params.get("trainable_pct"),
        trainable=params.get("trainable"),
        total=params.get("total"),
        memory_mb=memory,
        memory_kind=kind,
        acc=acc,
        n=n,
        wall_s=_mean([r.stats.get("wall_s") for r in runs]),
        samples_per_s=_mean([r.stats.get("samples_per_s") for r in runs]),
        stored_mb=_mean([r.stats.get("stored_mb") for r in runs]),
        open_recall=_mean([s.get("recall") for s in soft]),
        open_f1=_mean([s.get("f1") for s in soft]),
        gaps=gaps,
    )


def baseline_row(name: str, scores: dict, split: str, rule: str) -> Row:
    """A row for a reference that trains nothing (e.g. the majority answer given to every question), from scores
    shaped like a metrics.json; `name` is its Setting."""
    acc, n = {}, {}
    for group in GROUPS:
        value, n[group] = _cell(scores, rule, group)
        acc[group] = (None if value is None else 100 * value, None)
    soft = scores.get("open_soft") or {}
    return Row(
        runs=[], split=split, towers=("-", "-", "-"), rank="-", plan="", setting=name, params_pct=None,
        trainable=None, total=None, memory_mb=None, memory_kind=None, acc=acc, n=n, wall_s=None,
        samples_per_s=None, stored_mb=None, open_recall=soft.get("recall"), open_f1=soft.get("f1"),
        gaps={k: (None, None) for k in PROBED},
    )  # fmt: skip


def _lora_rank(treatment: Any) -> int | None:
    lora = not isinstance(treatment, str) and treatment.method in ("lora", "adalora", "loha", "lokr")
    return treatment.options.get("r") if lora else None


def _cell(metrics: dict, rule: str, group: str) -> tuple[float | None, int | None]:
    node = dig(metrics, ("global",) if group == "global" else ("rules", rule, group)) or {}
    return node.get("acc"), node.get("n")


def _memory(runs: list[RunRecord]) -> tuple[float | None, str | None]:
    """Peak GPU memory allocated where measured, else the peak CPU resident set (training only)."""
    gpu = _mean([r.stats.get("peak_allocated_mb") for r in runs])
    if gpu is not None:
        return gpu, "GPU alloc"
    return _mean([r.stats.get("peak_rss_mb") for r in runs]), "CPU RSS"


def _mean(values: list[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def caption(rows: list[Row], rule: str) -> str:
    splits = sorted({r.split for r in rows})
    modes = sorted(
        {r.inference for r in rows if r.inference}
    )  # generate: beam search; rank: candidate answers
    datasets = sorted({r.runs[0].config.data.dataset for r in rows if r.runs})
    credit = [CREDITS[d] for d in datasets if d in CREDITS]
    return (
        f"Accuracy (%) on split {', '.join(f'`{s}`' for s in splits) or '-'}"
        + (f" of the {' / '.join(f'`{m}`' for m in modes)} answers" if modes else "")
        + f"; {RULES[rule]}, open = the "
        "other questions, global = all; n = questions per group (open/closed/global). Mean ± sample std over "
        "seeds where a config ran with several (Seeds). #Params = trainable / all parameters, adapters "
        "included (%, 3 decimals), and the trainable count. Memory = peak GPU memory allocated in training "
        "(GPU alloc) or, on a CPU, the peak resident set of the training process (CPU RSS), MB. Time = "
        "training wall time."
        + (
            " Stored = what a run must keep for its task beside the base model (its weights/: the parameters "
            "its plan trains, fp32), MB."
            if any(r.stored_mb is not None for r in rows)
            else ""
        )
        + (
            " Image / Question gap = `mile probe`: how much the answer loss (nats per answer token, "
            "teacher-forced) rises when another question's image / question replaces the true one; about 0 "
            "means the model ignores that input; (closed) = over the questions the dataset labels closed."
            if any(_probed(r) for r in rows)
            else ""
        )
        + (
            " Rows without a plan (ViT, JTM, Dec -) train nothing: the reference named in Setting."
            if any(not r.runs for r in rows)
            else ""
        )
        + (f" Data: {'; '.join(credit)}." if credit else "")
    )


HEADER = ["ViT", "JTM", "Dec", "Rank", "#Params", "Memory", "Open", "Closed", "Global"]
PROBE_HEADER = ["Image gap", "Image gap (closed)", "Question gap"]
EXTRA = ["Time (s)", "Samples/s", "Seeds", "n (O/C/G)"]


def _probed(row: Row) -> bool:
    return any(row.gaps[k][0] is not None for k in PROBED)


def markdown_table(rows: list[Row]) -> str:
    setting = any(r.setting for r in rows)
    probed = any(_probed(r) for r in rows)
    stored = any(r.stored_mb is not None for r in rows)  # runs trained before it was measured have none
    header = HEADER[:6] + (["Stored"] if stored else []) + HEADER[6:]
    header = (["Setting"] if setting else []) + header + (PROBE_HEADER if probed else []) + EXTRA
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        memory = "n/a" if r.memory_mb is None else f"{r.memory_mb:,.0f} MB ({r.memory_kind})"
        cells = [*r.towers, r.rank, _params(r), memory]
        cells += [_stored(r.stored_mb)] if stored else []
        cells += [_mean_std_text(*r.acc[g], ".2f", "n/a") for g in GROUPS]
        cells += [_mean_std_text(*r.gaps[k], "+.3f", "-") for k in PROBED] if probed else []
        cells += [_num(r.wall_s, 1), _num(r.samples_per_s, 2), str(len(r.runs)) if r.runs else "-"]
        cells.append("/".join("-" if r.n[g] is None else str(r.n[g]) for g in GROUPS))
        lines.append("| " + " | ".join(([r.setting or "-"] if setting else []) + cells) + " |")
    return "\n".join(lines)


def _stored(mb: float | None) -> str:
    if mb is None:
        return "n/a"
    return f"{mb:,.0f} MB" if mb >= 10 else f"{mb:.2f} MB"


def _params(r: Row) -> str:
    if r.params_pct is None:
        return "n/a"
    count = r.trainable or 0
    short = f"{count / 1e6:.2f} M" if count >= 1e6 else f"{count / 1e3:.1f} K" if count >= 1e3 else str(count)
    return f"{r.params_pct:.3f} ({short})"


def _mean_std_text(mean: float | None, std: float | None, spec: str, missing: str) -> str:
    """`mean ± std` in format `spec` (the std unsigned), the mean alone for one seed, `missing` for none."""
    if mean is None:
        return missing
    text = format(mean, spec)
    return text if std is None else f"{text} ± {format(std, spec.lstrip('+'))}"


def _num(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


CSV_COLUMNS = [
    "setting", "vit", "jtm", "dec", "rank", "plan", "params_pct", "trainable", "total", "memory_mb",
    "memory_kind", "stored_mb", "open_acc", "open_std", "closed_acc", "closed_std", "global_acc", "global_std", "open_n",
    "closed_n", "global_n", "image_gap", "image_closed_gap", "question_gap", "wall_s", "samples_per_s", "seeds",
    "n_seeds", "open_recall", "open_f1", "split", "inference", "rule", "runs",
]  # fmt: skip


def write_csv(rows: list[Row], rule: str, file: Path, root: Path) -> Path:
    with open(file, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for r in rows:
            line = dict(zip(["vit", "jtm", "dec"], r.towers, strict=True))
            for g in GROUPS:
                line[f"{g}_acc"], line[f"{g}_std"] = r.acc[g]
                line[f"{g}_n"] = r.n[g]
            for k in PROBED:
                line[f"{k}_gap"] = r.gaps[k][0]
            line.update(
                setting=r.setting, rank=r.rank, plan=r.plan, params_pct=r.params_pct, trainable=r.trainable,
                total=r.total, memory_mb=r.memory_mb, memory_kind=r.memory_kind, stored_mb=r.stored_mb, wall_s=r.wall_s,
                samples_per_s=r.samples_per_s, seeds=" ".join(map(str, r.seeds)), n_seeds=len(r.runs),
                open_recall=r.open_recall, open_f1=r.open_f1, split=r.split, inference=r.inference, rule=rule,
                runs=" ".join(relative(x.path, root) for x in r.runs),
            )  # fmt: skip
            writer.writerow(line)
    return file
