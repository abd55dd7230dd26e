"""The compact plan notation of the paper's tables and of run names: `ViT-JTM-Dec`, one token per tower.

Tokens: `F` (frozen), `T` (fully trained), or a method: `LoRA`, `DoRA`, `rsLoRA`, `IA3`, `LoHa`, `LoKr`, `AdaLoRA`,
`VeRA`, `OFT`, `BOFT`, `LNTuning`, `Prefix`, `PTV2`, `Houlsby`, `Pfeiffer`, `LN`, `BitFit`, `Attn`, `FFN`, or any
other method's plan name; case does not matter when parsing. A method token gets the method's defaults (the
paper's settings), changed by suffixes: `_r4` (rank `r`), `_p20` (`num_virtual_tokens`), `_rf8`
(`reduction_factor`). The paper's row labels, with one rank after a space (`F-LoRA-LoRA r4`), parse too.

Formatting writes the tokens that parse back to the same plan; a tower whose settings the notation cannot express
gets a `+` (`LoRA+`), and a plan with extra trainable parameters ends in `+extra`. Those are labels only: parsing
refuses them, since the settings they stand for are not in the string.

This module maps tokens to treatments (mile.tuning.treatment); whole plans go through `parse_plan_notation` /
`format_plan_notation` in mile.tuning.plan, which builds on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mile.tuning.base import TOWERS
from mile.tuning.errors import PlanError
from mile.tuning.registry import methods
from mile.tuning.treatment import MethodSpec, resolve_treatment

FIXED = {"F": "frozen", "T": "full"}
SUFFIX_KEYS = {"r": "r", "p": "num_virtual_tokens", "rf": "reduction_factor"}
VARIANTS = {"dora": ("lora", {"use_dora": True}), "rslora": ("lora", {"use_rslora": True})}
_SUFFIX = re.compile(r"_(rf|r|p)(\d+)$", re.IGNORECASE)


def _token_table() -> dict[str, tuple[str, dict[str, Any]]]:
    table: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, info in methods().items():
        table[name.lower()] = (name, {})
        table[info.abbrev.lower()] = (name, {})
    table.update(VARIANTS)
    return table


def parse_token(token: str, tower: str, rank: int | None = None) -> str | MethodSpec:
    """One tower's token -> its treatment (a bare method gets its defaults for that tower)."""
    if token.upper() in FIXED:
        return FIXED[token.upper()]
    if "+" in token:
        raise PlanError(
            f"{tower}: notation token {token!r} carries '+', which marks settings the notation cannot "
            f"express; write the plan as a config instead"
        )
    body, options = token, {}
    while m := _SUFFIX.search(body):
        options[SUFFIX_KEYS[m.group(1).lower()]] = int(m.group(2))
        body = body[: m.start()]
    table = _token_table()
    if body.lower() not in table:
        valid = sorted({info.abbrev for info in methods().values()} | {"DoRA", "rsLoRA"})
        raise PlanError(f"{tower}: unknown notation token {token!r}; valid: F, T or a method {valid}")
    name, variant = table[body.lower()]
    if rank is not None and "r" in methods()[name].options:
        options.setdefault("r", rank)
    try:
        return resolve_treatment({"method": name, **variant, **options}, tower)
    except ValueError as exc:
        raise PlanError(f"notation token {token!r}: {exc}") from None


def parse_notation(text: str) -> dict[str, str | MethodSpec]:
    """`T-T-LoRA`, `F-LoRA_r4-LoRA_r4`, `F-LoRA-LoRA r4` -> each tower's treatment, with the paper defaults."""
    body, _, rest = text.strip().partition(" ")
    rank = None
    if rest:
        m = re.fullmatch(r"\s*r(\d+)\s*", rest, re.IGNORECASE)
        if not m:
            raise PlanError(f"plan notation {text!r}: after the tokens only a rank like ' r4' may follow")
        rank = int(m.group(1))
    if body.endswith("+extra"):
        raise PlanError(
            f"plan notation {text!r}: '+extra' marks extra trainable parameters the string does not "
            f"list; write the plan as a config instead"
        )
    tokens = body.split("-")
    if len(tokens) != len(TOWERS) or not all(tokens):
        raise PlanError(
            f"plan notation {text!r}: expected {len(TOWERS)} tokens {'-'.join(TOWERS)}, e.g. T-T-LoRA"
        )
    return {tower: parse_token(tok, tower, rank) for tower, tok in zip(TOWERS, tokens, strict=True)}


def format_token(treatment: str | MethodSpec, tower: str) -> str:
    if isinstance(treatment, str):
        return {"frozen": "F", "full": "T"}[treatment]
    info = methods()[treatment.method]
    opts = treatment.options
    abbrev = info.abbrev
    if treatment.method == "lora" and (opts.get("use_dora") or opts.get("use_rslora")):
        abbrev = "DoRA" if opts.get("use_dora") else "rsLoRA"
    token = abbrev
    for short, key in SUFFIX_KEYS.items():
        if key in opts and opts[key] != info.defaults.get(key):
            token += f"_{short}{opts[key]}"
    try:
        same = parse_token(token, tower) == treatment
    except PlanError:
        same = False
    return token if same else token + "+"


def format_notation(treatments: Mapping[str, str | MethodSpec], *, extra: bool = False) -> str:
    """The tokens of each tower's treatment, `+extra` when the plan also trains extra parameters."""
    text = "-".join(format_token(treatments[t], t) for t in TOWERS)
    return text + ("+extra" if extra else "")
