"""The compact plan notation of the paper's tables and of run names: `ViT-JTM-Dec`, one token per tower.

Tokens: `F` (frozen), `T` (fully trained), or a method: `LoRA`, `DoRA`, `rsLoRA`, `IA3`, `LoHa`, `LoKr`, `AdaLoRA`,
`VeRA`, `OFT`, `BOFT`, `LNTuning`, `Prefix`, `PTV2`, `Houlsby`, `Pfeiffer`, `LN`, `BitFit`, `Attn`, `FFN`, `Blocks`, or any
other method's plan name; case does not matter when parsing. A method token gets the method's defaults (the
paper's settings), changed by suffixes: `_r4` (rank `r`), `_p20` (`num_virtual_tokens`), `_rf8`
(`reduction_factor`). The paper's row labels, with one rank after a space (`F-LoRA-LoRA r4`), parse too.

Formatting writes the tokens that parse back to the same plan; a tower whose settings the notation cannot express
gets a `+` (`LoRA+`), and a plan with extra trainable parameters ends in `+extra`. Those are labels only: parsing
refuses them, since the settings they stand for are not in the string.

This module maps single tokens to treatments (mile.tuning.treatment) and back; whole plan strings (towers, the
rank after a space, `+extra`) go through `parse_plan_notation` / `format_plan_notation` in mile.tuning.plan.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from mile.tuning.errors import PlanError
from mile.tuning.registry import methods
from mile.tuning.treatment import MethodSpec, resolve_treatment

FIXED = {"F": "frozen", "T": "full"}
SUFFIX_KEYS = {"r": "r", "p": "num_virtual_tokens", "rf": "reduction_factor"}
VARIANTS = {"dora": ("lora", {"use_dora": True}), "rslora": ("lora", {"use_rslora": True})}
_SUFFIX = re.compile(r"_(rf|r|p)(\d+)$", re.IGNORECASE)


def _token_table() -> dict[str, tuple[str, dict[str, Any]]]:
    """Lower-case token -> (method, the options the token implies): plan names, abbreviations, variants."""
    table = {key.lower(): (name, {}) for name, info in methods().items() for key in (name, info.abbrev)}
    return {**table, **VARIANTS}


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


def format_token(treatment: str | MethodSpec, tower: str) -> str:
    """The token that parses back to `treatment`, or a label ending in `+` when none does."""
    if isinstance(treatment, str):
        return {v: k for k, v in FIXED.items()}[treatment]
    info, opts = methods()[treatment.method], treatment.options
    token = info.abbrev
    if treatment.method == "lora" and (opts.get("use_dora") or opts.get("use_rslora")):
        token = "DoRA" if opts.get("use_dora") else "rsLoRA"
    for short, key in SUFFIX_KEYS.items():
        if key in opts and opts[key] != info.defaults.get(key):
            token += f"_{short}{opts[key]}"
    with contextlib.suppress(PlanError):
        if parse_token(token, tower) == treatment:
            return token
    return token + "+"
