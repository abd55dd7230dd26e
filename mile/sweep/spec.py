"""Sweep files: a base config plus a grid and/or explicit runs, expanded into validated, named run configs.

    base: ../slake/mile-small.yaml        # a config file (relative to this sweep file) or an inline mapping,
                                          # which may itself hold `extends: file.yaml` (relative to this file)
    output_dir: runs/study                # optional; relative to the working directory, like run.output_dir
                                          # (default: the base's run.output_dir / <sweep file stem>)
    overrides: {train.epochs: 3}          # applied to every run
    grid:                                 # Cartesian product, the first key varying slowest
      plan: [F-LoRA_r4-LoRA_r4, T-T-LoRA_r8, T-T-T]   # compact notation, or plan mappings
      train.lr: [1e-4, 5e-5]
      data: [{dataset: slake, root: ../shared/data/slake}, {dataset: vqa_rad, root: ../shared/data/vqa_rad}]
    runs:                                 # explicit runs after the grid's, each on base + overrides alone
      - {plan: T-T-T, train.lr: 2e-5}
    launcher: {kind: slurm, partition: gpu, gpus_per_node: 4}   # optional: where the runs train (sweep.launch)

Keys are dotted config keys or nested mappings, merged over the base by the rule of `extends` and `key=value`
overrides (mile.config.merge_config): a mapping value merges into the base's mapping at that key, except a tower's
treatment (`plan.vision`, `plan.text_encoder`, `plan.text_decoder`), which is replaced whole (a mapping without
`method`, e.g. `plan.text_decoder.r: [4, 8]`, edits it); a plan in notation sets all three towers and keeps the
base's `plan.extra_trainable`. `run.*` is the sweep's to set.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mile.config import Config, ConfigError, dotted_layer, load_config, merge_config, validate_config
from mile.safe_yaml import parse_yaml
from mile.tuning import PlanError, parse_plan_notation

from .naming import config_hash, config_leaves, describe, run_name, varying_keys

KEYS = ("base", "output_dir", "overrides", "grid", "runs", "launcher")


class SweepError(ConfigError):
    """A problem in a sweep file or with a sweep's run directories; the message names the file and key."""


@dataclass(frozen=True)
class SweepRun:
    index: int  # 1-based position in the whole sweep (before sharding)
    name: str
    hash: str  # of the resolved config (see mile.sweep.naming); the run's identity
    config: Config
    values: dict[str, Any]  # the varying non-plan values, e.g. {"train.lr": 0.0001}
    origin: str  # "grid" or "runs[i]"

    @property
    def plan(self) -> str:
        return self.config.plan.notation()


@dataclass
class Sweep:
    path: Path
    output_dir: Path
    runs: list[SweepRun] = field(default_factory=list)
    launcher: dict[str, Any] = field(default_factory=dict)  # where the runs train (mile.sweep.launch)

    def run_dir(self, run: SweepRun) -> Path:
        """`<output>/<name>`, or the one existing `<output>/*-<hash>`: the same config under an older name
        (the readable part names the keys that vary, so it changes when a grid grows, e.g. by a seed)."""
        exact = self.output_dir / run.name
        if exact.exists():
            return exact
        older = [p for p in self.output_dir.glob(f"*-{run.hash}") if p.is_dir()]
        return older[0] if len(older) == 1 else exact


def load_sweep(path: str | Path, output_dir: str | Path | None = None) -> Sweep:
    """Read, expand and validate a sweep file; every run's config is checked before anything trains."""
    path = Path(path)
    spec = read_sweep_file(path)
    base = merge_config(base_data(spec["base"], path), nest(spec.get("overrides") or {}, path, "overrides"))
    points = expand(spec, path)
    configs = []
    for i, (origin, raw, point) in enumerate(points, 1):
        where = ", ".join(f"{k}={v}" for k, v in raw.items()) or "base"
        configs.append(
            validate_config(merge_config(base, point), f"sweep {path}, run {i} ({origin}: {where})")
        )
    # no sweep key sets `run.*` (see nest), so every run still has the base's output_dir here
    out = Path(output_dir or spec.get("output_dir") or Path(configs[0].run.output_dir) / path.stem)
    varying = varying_keys([config_leaves(c) for c in configs])
    runs = []
    for i, ((origin, _, _), cfg) in enumerate(zip(points, configs, strict=True), 1):
        name = run_name(cfg, varying)
        cfg.run.output_dir, cfg.run.name = str(out), name
        runs.append(SweepRun(i, name, config_hash(cfg), cfg, describe(cfg, varying), origin))
    _check_unique(runs, path)
    return Sweep(path, out, runs, dict(spec.get("launcher") or {}))


def read_sweep_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SweepError(f"sweep file {path} not found")
    try:
        spec = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except Exception as exc:  # yaml.YAMLError and friends
        raise SweepError(f"sweep file {path} is not valid YAML: {exc}") from None
    if not isinstance(spec, dict):
        raise SweepError(f"sweep file {path} must hold a mapping with keys {list(KEYS)}")
    for key in spec:
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            if key in Config.model_fields:
                hint = " (this looks like a run config; a sweep file names one under `base:`)"
            raise SweepError(f"sweep {path}: unknown key {key!r}{hint}; valid keys: {list(KEYS)}")
    if "base" not in spec:
        raise SweepError(
            f"sweep {path}: `base` is required (a config file relative to the sweep, or a mapping)"
        )
    if not spec.get("grid") and not spec.get("runs"):
        raise SweepError(f"sweep {path}: needs a non-empty `grid` and/or `runs`")
    _check_types(spec, path)
    return spec


def _check_types(spec: dict[str, Any], path: Path) -> None:
    expect = {
        "base": (str, dict),
        "output_dir": (str,),
        "overrides": (dict,),
        "grid": (dict,),
        "runs": (list,),
        "launcher": (dict,),
    }
    for key, types in expect.items():
        if spec.get(key) is not None and not isinstance(spec[key], types):
            names = " or ".join("a mapping" if t is dict else f"a {t.__name__}" for t in types)
            raise SweepError(f"sweep {path}: `{key}` must be {names}, got {spec[key]!r}")
    for key, values in (spec.get("grid") or {}).items():
        if not isinstance(values, list) or not values:
            raise SweepError(
                f"sweep {path}: grid.{key} must be a non-empty list of values, got {values!r} "
                "(a value every run shares goes under `overrides`)"
            )
    for i, entry in enumerate(spec.get("runs") or []):
        if not isinstance(entry, dict):
            raise SweepError(f"sweep {path}: runs[{i}] must be a mapping of overrides, got {entry!r}")


def base_data(base: str | dict[str, Any], path: Path) -> dict[str, Any]:
    """The base config, resolved (defaults written out), as a plain mapping."""
    if isinstance(base, str):
        return _load(path, "base config", base)
    inline = dict(base)
    extends = inline.pop("extends", None)
    if extends is not None:
        inline = merge_config(_load(path, "base.extends", extends), nest(inline, path, "base"))
    return _dump(validate_config(inline, f"sweep {path}: base"))


def _load(path: Path, key: str, name: Any) -> dict[str, Any]:
    file = path.parent / str(name)
    if not file.is_file():
        raise SweepError(f"sweep {path}: {key} {name!r} not found (looked for {file})")
    return _dump(load_config(file))


def _dump(cfg: Config) -> dict[str, Any]:
    return cfg.model_dump(mode="json", exclude={"extends"})


def expand(spec: dict[str, Any], path: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(origin, the overrides as written, nested) per run: the grid's product in order, then the runs."""
    grid = spec.get("grid") or {}
    points = []
    for combo in itertools.product(*grid.values()) if grid else ():
        flat = dict(zip(grid.keys(), combo, strict=True))
        points.append(("grid", flat, nest(flat, path, "grid")))
    for i, entry in enumerate(spec.get("runs") or []):
        points.append((f"runs[{i}]", entry, nest(entry, path, f"runs[{i}]")))
    return points


def nest(mapping: dict[str, Any], path: Path, where: str) -> dict[str, Any]:
    """{"train.lr": x, "data": {...}} -> one nested top layer, its keys merged in order."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        parts = str(key).split(".")
        if not all(parts):
            raise SweepError(f"sweep {path}: {where}: bad key {key!r}")
        if parts[0] in ("run", "extends"):
            raise SweepError(
                f"sweep {path}: {where}.{key}: `{parts[0]}` is set by the sweep "
                "(use the sweep's output_dir; run names are derived from the config)"
            )
        if parts == ["plan"] and isinstance(value, str):
            try:  # here, not at validation, so that the error names the grid / runs entry
                parse_plan_notation(value)
            except PlanError as exc:
                raise SweepError(f"sweep {path}: {where}.plan: {exc}") from None
        out = merge_config(out, dotted_layer(str(key), value))
    return out


def _check_unique(runs: list[SweepRun], path: Path) -> None:
    seen: dict[str, SweepRun] = {}
    for run in runs:
        other = seen.setdefault(run.name, run)
        if other is not run:
            raise SweepError(
                f"sweep {path}: runs {other.index} ({other.origin}) and {run.index} ({run.origin}) resolve to "
                f"the same config ({run.name}); remove one"
            )
