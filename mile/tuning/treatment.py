"""One tower's treatment: `frozen`, `full`, or a method with its options, validated and with defaults filled in.

A method dict holds `method`, the common keys `targets` / `exclude` (module patterns, see mile.tuning.targets) and
`layers`, and the method's own options: for peft methods the fields of its peft config (`alpha` and `dropout`
stand for `lora_alpha` / `lora_dropout` where those exist), for native ones their option models. On validation a
bare name becomes its method dict and every default is written out, so a dumped plan records what ran.

The plan (mile.tuning.plan) holds one treatment per tower; the notation (mile.tuning.notation) writes each as a
token. Both build on this module.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from mile.tuning.base import COMMON_KEYS, TOWER_KIND, MethodCall, MethodInfo
from mile.tuning.registry import UNSUPPORTED_HINTS, methods

FIXED = ("frozen", "full")


class MethodSpec(BaseModel):
    """One method on one tower; the method's own options are the extra keys."""

    model_config = ConfigDict(extra="allow")
    method: str
    targets: list[str]
    exclude: list[str] = Field(default_factory=list)
    layers: list[int] | None = None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def info(self) -> MethodInfo:
        return methods()[self.method]

    def call(self, tower: str) -> MethodCall:
        layers = None if self.layers is None else tuple(self.layers)
        return MethodCall(self.method, tower, tuple(self.targets), tuple(self.exclude), layers, self.options)


Treatment = Union[Literal["frozen", "full"], MethodSpec]  # noqa: UP007 (pydantic needs a runtime union)


def resolve_treatment(value: Any, tower: str) -> str | MethodSpec:
    """A tower's treatment from a name or a method dict, validated, with the method's defaults filled in."""
    if isinstance(value, MethodSpec):
        value = value.model_dump()
    if isinstance(value, str):
        if value in FIXED:
            return value
        value = {"method": value}
    if not isinstance(value, dict):
        raise ValueError(
            f"{tower}: expected one of {list(FIXED)}, a method name or a method dict; got {value!r}"
        )
    info = _method(value.get("method"), tower)
    options = _fold_aliases(info, {k: v for k, v in value.items() if k not in COMMON_KEYS}, tower)
    kind = TOWER_KIND[tower]
    for key, default in {**info.defaults, **info.tower_defaults.get(kind, {})}.items():
        options.setdefault(key, default)
    if info.check is not None:
        try:
            options = info.check(options)
        except ValueError as exc:
            raise ValueError(f"{tower} ({info.name}): {exc}") from None
    targets = as_patterns(value.get("targets"), f"{tower}.targets") or list(info.targets[kind])
    exclude = as_patterns(value.get("exclude"), f"{tower}.exclude")
    if "feedforward" in options:
        options["feedforward"] = as_patterns(options["feedforward"], f"{tower}.feedforward")
    layers = value.get("layers")
    if layers is not None and (
        not isinstance(layers, (list, tuple))
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers)
    ):
        raise ValueError(
            f"{tower}.layers: expected a list of layer indices (negative count from the end), got {layers!r}"
        )
    return MethodSpec(method=info.name, targets=targets, exclude=exclude, layers=layers, **options)


def as_patterns(value: Any, key: str) -> list[str]:
    """A list of name patterns (one string is a list of one), regexes checked; `key` names it in errors."""
    if value is None:
        return []
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) and p for p in value):
        raise ValueError(f"{key}: expected a list of name patterns (glob, re:..., type:...), got {value!r}")
    for pattern in value:
        if pattern.startswith("re:"):
            try:
                re.compile(pattern[3:])
            except re.error as exc:
                raise ValueError(f"{key}: invalid regular expression {pattern!r}: {exc}") from None
    return list(value)


def _method(name: Any, tower: str) -> MethodInfo:
    known = methods()
    if isinstance(name, str) and name.lower() in known:
        return known[name.lower()]
    if name is None:
        raise ValueError(f"{tower}.method: missing; valid: {list(FIXED)} or a method {sorted(known)}")
    hint = UNSUPPORTED_HINTS.get(str(name).lower())
    close = difflib.get_close_matches(str(name).lower(), sorted(known), n=3)
    extra = f" ({hint})" if hint else (f"; did you mean {close}?" if close else "")
    raise ValueError(
        f"{tower}.method: unknown method {name!r}{extra}; valid methods: {sorted(known)} "
        f"(or the treatments {list(FIXED)})"
    )


def _fold_aliases(info: MethodInfo, options: dict[str, Any], tower: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    given: dict[str, str] = {}  # option name -> the key the user wrote for it
    for key, value in options.items():
        name = info.aliases.get(key, key)
        if name in out:
            raise ValueError(f"{tower}.{key}: {info.name} got both {given[name]!r} and {key!r}; give one")
        given[name] = key
        if name not in info.options:
            valid = sorted(info.options | set(info.aliases) | set(COMMON_KEYS))
            close = difflib.get_close_matches(key, valid, n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise ValueError(
                f"{tower}.{key}: unknown option {key!r} (value {value!r}) for method "
                f"{info.name!r}{hint}; valid options: {valid}"
            )
        out[name] = value
    return out
