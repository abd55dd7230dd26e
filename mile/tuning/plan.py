"""The tuning plan: one treatment per tower (mile.tuning.treatment), as typed config.

    plan:
      vision: full                        # or frozen, or a method name (its defaults), or a method dict
      text_encoder: {method: ia3}
      text_decoder: {method: lora, r: 8, alpha: 32, dropout: 0.1, targets: ["*.self_attn.q"], layers: [0, 1]}
      extra_trainable: ["text_decoder.lm_head.*"]   # parameter-name patterns also trained

A plan also reads and writes the compact notation (`T-T-LoRA`, mile.tuning.notation): `parse_plan_notation`,
`format_plan_notation`, `PlanConfig.notation()`.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from mile.tuning.base import TOWERS
from mile.tuning.errors import PlanError
from mile.tuning.notation import format_token, parse_token
from mile.tuning.treatment import MethodSpec, Treatment, as_patterns, resolve_treatment


class PlanConfig(BaseModel):
    """Per-tower treatments (the model's attribute names) plus extra trainable parameter patterns."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    vision: Treatment = "full"
    text_encoder: Treatment = "full"
    text_decoder: Treatment = "full"
    extra_trainable: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # extra="forbid" alone would not say which keys are valid
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    close = difflib.get_close_matches(str(key), list(cls.model_fields), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise ValueError(
                        f"unknown plan key {key!r} (value {data[key]!r}){hint}; valid keys: "
                        f"{list(cls.model_fields)}"
                    )
        return data

    @field_validator("vision", "text_encoder", "text_decoder", mode="before")
    @classmethod
    def _treatment(cls, value: Any, info: ValidationInfo) -> Any:
        return resolve_treatment(value, info.field_name)

    @field_validator("extra_trainable", mode="before")
    @classmethod
    def _extra(cls, value: Any) -> Any:
        return as_patterns(value, "extra_trainable")

    def tower(self, name: str) -> str | MethodSpec:
        if name not in TOWERS:
            raise ValueError(f"unknown tower {name!r}; towers: {list(TOWERS)}")
        return getattr(self, name)

    def notation(self) -> str:
        """Compact form for run names and tables, e.g. `T-T-LoRA`, `F-LoRA_r4-LoRA_r4` (see mile.tuning.notation)."""
        return format_plan_notation(self)


def parse_plan_notation(text: str) -> PlanConfig:
    """`T-T-LoRA`, `F-IA3-IA3`, `F-LoRA_r4-LoRA_r4`, `F-LoRA-LoRA r4` -> a PlanConfig with the paper defaults."""
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
    return PlanConfig(**{t: parse_token(tok, t, rank) for t, tok in zip(TOWERS, tokens, strict=True)})


def format_plan_notation(plan: PlanConfig) -> str:
    """The plan's notation; `+` marks what the notation cannot express (see mile.tuning.notation)."""
    text = "-".join(format_token(plan.tower(t), t) for t in TOWERS)
    return text + ("+extra" if plan.extra_trainable else "")


def as_plan(plan: PlanConfig | dict | str) -> PlanConfig:
    """A PlanConfig from itself, a config dict, or a compact notation string."""
    if isinstance(plan, PlanConfig):
        return plan
    if isinstance(plan, str):
        return parse_plan_notation(plan)
    return PlanConfig.model_validate(plan)
