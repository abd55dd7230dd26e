"""Which modules (or parameters) a plan's patterns hit.

Pattern syntax, the same wherever a plan takes patterns (`targets`, `exclude`, `feedforward`, `extra_trainable`):

- a glob (`fnmatch`, case-sensitive; `*` also crosses dots), e.g. `*.self_attn.q`, `vision.blocks.1?.mlp.*`;
- `re:<regex>`: a Python regular expression that must match the whole name (`re.fullmatch`);
- `type:<Class>`: modules whose class (or a base class) has that name, e.g. `type:LayerNorm` (modules only).

Module patterns are tried against the full name (`text_decoder.layers.0.self_attn.q`) and against the name
inside the tower (`layers.0.self_attn.q`); parameter patterns against the model's own full parameter names, as
before any method renames them (`text_decoder.layers.0.self_attn.q.bias`, not peft's `...q.base_layer.bias`). A `layers` filter
keeps modules of those block indices (`vision.blocks.N` / `text_*.layers.N`; negative counts from the end) and
drops modules outside any block (e.g. `vision.patch_embed`). A pattern that matches nothing is an error that
lists close names, because a typo would otherwise silently tune less than the user asked for.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from mile.tuning.base import MethodCall, MethodInfo
from mile.tuning.errors import PlanError

_LAYER = re.compile(r"^(?:blocks|layers)\.(\d+)(?:\.|$)")
_DIGITS = re.compile(r"(?<=\.)\d+(?=\.|$)")


@dataclass(frozen=True)
class Candidate:
    full: str  # e.g. text_decoder.layers.0.self_attn.q
    rel: str  # the name inside the tower, e.g. layers.0.self_attn.q ("" for the tower itself)
    classes: tuple[str, ...]  # class names along the MRO, for type: patterns


def _matches(pattern: str, cand: Candidate) -> bool:
    if pattern.startswith("type:"):
        return pattern[5:] in cand.classes
    if pattern.startswith("re:"):
        rx = _compile(pattern[3:])
        return bool(rx.fullmatch(cand.full) or rx.fullmatch(cand.rel))
    return fnmatch.fnmatchcase(cand.full, pattern) or (
        bool(cand.rel) and fnmatch.fnmatchcase(cand.rel, pattern)
    )


def _compile(regex: str) -> re.Pattern[str]:
    try:
        return re.compile(regex)
    except re.error as exc:
        raise PlanError(f"invalid regular expression {regex!r}: {exc}") from None


def module_candidates(tower: nn.Module, tower_name: str) -> list[Candidate]:
    out = []
    for rel, module in tower.named_modules():
        full = f"{tower_name}.{rel}" if rel else tower_name
        out.append(Candidate(full, rel, tuple(c.__name__ for c in type(module).__mro__)))
    return out


def close_names(pattern: str, names: Iterable[str]) -> list[str]:
    """Names resembling `pattern`: layer indices folded to `*` and `*.`-suffixes offered, so that a typo in
    `*.self_atn.q` still finds `*.self_attn.q`."""
    body = pattern.split(":", 1)[1] if pattern.startswith(("re:", "type:")) else pattern
    pool: set[str] = set()
    for name in names:
        general = _DIGITS.sub("*", name)
        parts = general.split(".")
        pool.add(general)
        pool.update("*." + ".".join(parts[i:]) for i in range(1, len(parts)))
    return difflib.get_close_matches(body, sorted(pool), n=5, cutoff=0.6)


def _no_match(key: str, pattern: str, where: str, names: list[str]) -> PlanError:
    close = close_names(pattern, names)
    hint = f"; close names: {close}" if close else ""
    return PlanError(f"{key}: pattern {pattern!r} matches no {where}{hint}")


def _filter(patterns: Sequence[str], cands: list[Candidate], key: str, tower_name: str) -> list[Candidate]:
    """Candidates hit by any pattern; every pattern must hit at least one."""
    hit = []
    for pattern in patterns:
        found = [c for c in cands if _matches(pattern, c)]
        if not found and pattern.startswith("type:"):
            classes = sorted({c.classes[0] for c in cands})
            close = difflib.get_close_matches(pattern[5:], classes, n=3, cutoff=0.5)
            raise PlanError(
                f"{key}: pattern {pattern!r} matches no module of {tower_name}; "
                + (f"close classes: {close}; " if close else "")
                + f"module classes there: {classes}"
            )
        if not found:
            raise _no_match(key, pattern, f"module of {tower_name}", [c.full for c in cands])
        hit.extend(found)
    return hit


def layer_of(rel: str) -> int | None:
    """The block index of a module inside its tower, or None outside the blocks."""
    m = _LAYER.match(rel)
    return int(m.group(1)) if m else None


def _layer_set(layers: Sequence[int], depth: int, key: str) -> set[int]:
    out = set()
    for i in layers:
        if not -depth <= i < depth:
            raise PlanError(
                f"{key}.layers: layer {i} is out of range; this tower has layers 0..{depth - 1} "
                f"(or -{depth}..-1 from the end)"
            )
        out.add(i % depth)
    return out


def select_modules(
    tower: nn.Module,
    tower_name: str,
    targets: Sequence[str],
    exclude: Sequence[str] = (),
    layers: Sequence[int] | None = None,
    key: str | None = None,
) -> list[str]:
    """Full names of the tower's modules hit by `targets`, minus `exclude`, kept to `layers`; in module order.
    `key` is the plan key named in errors (default: the tower name)."""
    key = key or tower_name
    cands = module_candidates(tower, tower_name)
    if not targets:
        raise PlanError(f"{key}.targets: no target patterns given")
    hit = {c.full for c in _filter(targets, cands, f"{key}.targets", tower_name)}
    if exclude:
        hit -= {c.full for c in _filter(exclude, cands, f"{key}.exclude", tower_name)}
    if layers is not None:
        keep = _layer_set(layers, len({layer_of(c.rel) for c in cands} - {None}), key)
        hit = {c.full for c in cands if c.full in hit and layer_of(c.rel) in keep}
    if not hit:
        raise PlanError(
            f"{key}: targets {list(targets)} hit modules, but exclude {list(exclude)} / "
            f"layers {layers} leave none"
        )
    return [c.full for c in cands if c.full in hit]


def resolve(model: nn.Module, call: MethodCall, info: MethodInfo) -> MethodCall:
    """`call` with what it hits filled in: its modules, those of them its `feedforward` patterns name (IA3), and
    the parameters a partial method trains (`info.trains`). apply_plan calls it once per tower; methods only read
    the result, so every method hits what `plan_targets` reports."""
    tower = model.get_submodule(call.tower)
    names = select_modules(tower, call.tower, call.targets, call.exclude, call.layers)
    modules = {n: tower.get_submodule(relative(n, call.tower)) for n in names}
    patterns = call.options.get("feedforward")  # each must hit some module of the tower, a target or not
    ff = select_modules(tower, call.tower, patterns, key=f"{call.tower}.feedforward") if patterns else []
    feedforward = tuple(n for n in names if n in ff)
    return dataclasses.replace(
        call, modules=modules, feedforward=feedforward, parameters=_trained(modules, info)
    )


def _trained(modules: Mapping[str, nn.Module], info: MethodInfo) -> tuple[str, ...]:
    if info.trains is None:
        return ()
    # bias-only takes each module's own bias, so that a broad pattern (`*`) does not take its children's twice
    deep = info.trains == "all"
    return tuple(
        f"{full}.{name}"
        for full, module in modules.items()
        for name, _ in module.named_parameters(recurse=deep)
        if deep or name == "bias"
    )


def select_parameters(model: nn.Module, patterns: Sequence[str], key: str) -> list[str]:
    """Full parameter names hit by `patterns` (globs or re:); each pattern must hit something."""
    names = [n for n, _ in model.named_parameters()]
    out: list[str] = []
    for pattern in patterns:
        if pattern.startswith("type:"):
            raise PlanError(
                f"{key}: {pattern!r}: type: patterns select modules; use a parameter name pattern"
            )
        if pattern.startswith("re:"):
            rx = _compile(pattern[3:])
            found = [n for n in names if rx.fullmatch(n)]
        else:
            found = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not found:
            raise _no_match(key, pattern, "parameter of the model", names)
        out.extend(n for n in found if n not in out)
    return out


def relative(full: str, tower_name: str) -> str:
    """`text_decoder.layers.0.self_attn.q` -> `layers.0.self_attn.q`."""
    assert full == tower_name or full.startswith(tower_name + "."), (full, tower_name)
    return full[len(tower_name) + 1 :]


def exact_regex(names: Iterable[str], tower_name: str) -> str:
    """A regex that full-matches exactly these modules by their names inside the tower (how targets are handed
    to peft, whose string `target_modules` is matched with re.fullmatch against those names)."""
    return "(?:" + "|".join(re.escape(relative(n, tower_name)) for n in names) + ")"
