"""Every method a plan can name, with its default targets on our module names and its default settings.

Defaults are the MILE paper's where it has them (LoRA r 8, alpha 32, dropout 0.1 on q and v of self- and
cross-attention in the text towers; on q, k, v, o, fc1, fc2 and the patch embedding in the ViT; IA3 on k, v and
every "output.dense"; prefix tuning 10 tokens with hidden 768; P-tuning v2 10 tokens), peft's own otherwise.

IA3 in the ViT: the paper's ViT IA3 has 36,864 parameters, 3,072 per block. The placement that gives that, and
the one the IA3 paper prescribes for a feed-forward block (l_ff rescales the d_ff = 3,072 inner activations), is
`mlp.fc2` as a feed-forward module (scaling its 3,072 inputs) and nothing in the ViT's attention: the authors'
key/value/output.dense patterns named BERT modules that the timm-style ViT (fused `qkv`, `proj`) does not have.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel, ValidationError

from mile.tuning.adapters import AdapterOptions, apply_adapters
from mile.tuning.base import MethodInfo
from mile.tuning.partial import PARTIAL, apply_partial
from mile.tuning.peft_method import apply_peft, check_options, option_names, peft_methods
from mile.tuning.prefix import PrefixOptions, apply_prefix
from mile.tuning.ptv2 import PTV2Options, apply_ptv2

VISION_LINEAR = ("*.attn.q", "*.attn.k", "*.attn.v", "*.attn.o", "*.mlp.fc1", "*.mlp.fc2")
TEXT_QV = ("*.self_attn.q", "*.self_attn.v", "*.cross_attn.q", "*.cross_attn.v")
IA3_TEXT = ("*.self_attn.k", "*.self_attn.v", "*.self_attn.o", "*.cross_attn.k", "*.cross_attn.v",
            "*.cross_attn.o", "*.mlp.fc2")  # fmt: skip
IA3_TEXT_FF = ("*.self_attn.o", "*.cross_attn.o", "*.mlp.fc2")
CONV_CAPABLE = {"lora", "loha", "lokr"}  # also wrap the ViT's patch-embedding Conv2d, as the paper's LoRA

ABBREV = {
    "lora": "LoRA", "ia3": "IA3", "loha": "LoHa", "lokr": "LoKr", "adalora": "AdaLoRA", "vera": "VeRA",
    "oft": "OFT", "boft": "BOFT", "ln_tuning": "LNTuning", "fourierft": "FourierFT", "hra": "HRA",
    "vblora": "VBLoRA", "randlora": "RandLoRA",
}  # fmt: skip
PEFT_DEFAULTS: dict[str, dict[str, Any]] = {
    "lora": {"r": 8, "lora_alpha": 32, "lora_dropout": 0.1},
    "adalora": {"init_r": 12, "target_r": 8, "lora_alpha": 32, "lora_dropout": 0.1},
}
ALIASES = {"alpha": ("lora_alpha",), "dropout": ("lora_dropout", "vera_dropout")}


def _peft_info(name: str) -> MethodInfo:
    options = option_names(name)
    if name == "ia3":
        targets = {"vision": ("*.mlp.fc2",), "text": IA3_TEXT}
        tower_defaults = {"vision": {"feedforward": ["*.mlp.fc2"]}, "text": {"feedforward": [*IA3_TEXT_FF]}}
    elif name == "ln_tuning":
        targets, tower_defaults = {"vision": ("type:LayerNorm",), "text": ("type:LayerNorm",)}, {}
    else:
        vision = VISION_LINEAR + (("patch_embed",) if name in CONV_CAPABLE else ())
        targets, tower_defaults = {"vision": vision, "text": TEXT_QV}, {}
    aliases = {
        short: next(c for c in cands if c in options)
        for short, cands in ALIASES.items()
        if short not in options and any(c in options for c in cands)
    }
    return MethodInfo(
        name=name,
        kind="peft",
        abbrev=ABBREV.get(name, name),
        targets=targets,
        options=options,
        defaults=PEFT_DEFAULTS.get(name, {}),
        tower_defaults=tower_defaults,
        aliases=aliases,
        check=functools.partial(check_options, name),
        apply=apply_peft,
    )


def _pydantic_check(model: type[BaseModel], options: dict[str, Any]) -> dict[str, Any]:
    try:
        return model(**options).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()
        )
        raise ValueError(problems) from None


def _native(
    name: str, abbrev: str, options: type[BaseModel], targets: dict, apply: Any, **defaults: Any
) -> MethodInfo:
    return MethodInfo(
        name=name,
        kind="native",
        abbrev=abbrev,
        targets=targets,
        options=frozenset(options.model_fields),
        defaults={**options().model_dump(), **defaults},
        check=functools.partial(_pydantic_check, options),
        apply=apply,
    )


@functools.cache
def methods() -> dict[str, MethodInfo]:
    """All methods by plan name."""
    out = {name: _peft_info(name) for name in peft_methods()}
    attn = {"vision": ("*.attn",), "text": ("*.self_attn",)}
    out["prefix"] = _native("prefix", "Prefix", PrefixOptions, attn, apply_prefix)
    out["ptv2"] = _native("ptv2", "PTV2", PTV2Options, attn, apply_ptv2)
    houlsby = {"vision": ("*.attn", "*.mlp"), "text": ("*.self_attn", "*.cross_attn", "*.mlp")}
    out["houlsby"] = _native(
        "houlsby", "Houlsby", AdapterOptions, houlsby, apply_adapters, non_linearity="swish"
    )
    pfeiffer = {"vision": ("*.mlp",), "text": ("*.mlp",)}
    out["pfeiffer"] = _native("pfeiffer", "Pfeiffer", AdapterOptions, pfeiffer, apply_adapters)
    for name, (abbrev, targets, trains) in PARTIAL.items():
        both = targets if isinstance(targets, dict) else {"vision": targets, "text": targets}
        out[name] = MethodInfo(name, "partial", abbrev, both, frozenset(), apply=apply_partial, trains=trains)
    return out


# peft methods a plan cannot inject, with where to go instead
UNSUPPORTED_HINTS = {
    "prefix_tuning": "peft's prefix tuning cannot reach our towers; use 'prefix'",
    "p_tuning": "peft's P_TUNING is P-tuning v1; use 'ptv2' for P-tuning v2",
    "prompt_tuning": "input prompts are not supported; use 'ptv2' or 'prefix'",
}
