"""Per-tower tuning plans: frozen / full / PEFT methods, with exact parameter accounting.

    from mile.tuning import apply_plan, load_tuned, parse_plan_notation

    handle = apply_plan(model, "T-T-LoRA")        # or a PlanConfig, or a config dict
    handle.trainable_report()                     # {"towers": {...}, "total", "trainable", "trainable_pct"}
    handle.save("out/adapters")                   # the plan + only what it trains
    handle.merge(); handle.unmerge()              # LoRA-family adapters into the weights and back
    with handle.disabled(): ...                   # the base model (when `handle.restores_base`)
    handle = load_tuned(fresh_model, "out/adapters")

Modules: plan (PlanConfig), treatment (one tower's), notation (T-T-LoRA), targets (pattern syntax), registry
(methods and their defaults), peft_method (peft tuners per tower), prefix / ptv2 / adapters (native methods),
partial (LayerNorm, bias, attention, FFN-only), accounting, handle (apply_plan), io (checkpoints).
"""

from mile.tuning.accounting import count_parameters
from mile.tuning.errors import PlanError
from mile.tuning.handle import TuningHandle, apply_plan, plan_targets
from mile.tuning.io import load_tuned, read_plan
from mile.tuning.plan import MethodSpec, PlanConfig, format_plan_notation, parse_plan_notation
from mile.tuning.registry import methods

__all__ = [
    "MethodSpec",
    "PlanConfig",
    "PlanError",
    "TuningHandle",
    "apply_plan",
    "count_parameters",
    "format_plan_notation",
    "load_tuned",
    "methods",
    "parse_plan_notation",
    "plan_targets",
    "read_plan",
]
