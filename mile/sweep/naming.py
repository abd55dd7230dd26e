"""Run names: `<plan notation>-<varying values>-<hash>`, deterministic, readable and filesystem-safe.

The hash is of the full resolved config (every key except the `run` section), taken over the keys whose values
differ from the defaults, so a new config key with a default does not rename existing runs while any changed
value does. Only keys that vary across the sweep's runs appear as readable tokens, e.g.
`T-T-LoRA_r8-lr1e-4-s1-3fa9c2d1`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import PurePath
from typing import Any

from mile.config import Config, config_leaves

HASH_CHARS = 8
MAX_READABLE = 100  # characters before the hash
# short prefixes for common keys ("" = the value alone); other keys use their last component
ABBREV = {
    "train.lr": "lr",
    "train.lr_adapters": "lra",
    "train.lr_new": "lrn",
    "train.seed": "s",
    "train.epochs": "e",
    "train.batch_size": "bs",
    "train.weight_decay": "wd",
    "model.image_size": "px",
    "model.size": "",
    "data.dataset": "",
    "data.limit": "n",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


@functools.cache
def _default_leaves() -> dict[str, Any]:
    return config_leaves(Config())


def config_hash(cfg: Config) -> str:
    """Short hash of the resolved config: every value that differs from the defaults, plus defaults it lacks."""
    defaults, leaves = _default_leaves(), config_leaves(cfg)
    changed = {k: v for k, v in leaves.items() if k not in defaults or defaults[k] != v}
    absent = sorted(k for k in defaults if k not in leaves)
    text = json.dumps({"changed": changed, "absent": absent}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def varying_keys(leaves: list[dict[str, Any]]) -> list[str]:
    """Keys (first-seen order) whose value is not the same in every run; a key some runs lack varies too."""
    order: dict[str, None] = {}
    for one in leaves:
        order.update(dict.fromkeys(one))
    missing = object()
    return [k for k in order if len({json.dumps(one.get(k, missing), default=str) for one in leaves}) > 1]


def format_value(value: Any) -> str:
    """A value as a short token: 1e-4 (not 0.0001), on/off, a path's last part, lists joined with +."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-2:
            mantissa, exp = f"{value:.3e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
        return f"{value:g}"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return "+".join(format_value(v) for v in value) or "none"
    text = str(value)
    return (PurePath(text).name or text) if "/" in text else text


def token(key: str, value: Any) -> str:
    prefix = ABBREV.get(key, key.rsplit(".", 1)[-1])
    return safe(f"{prefix}{format_value(value)}")


def safe(text: str) -> str:
    """Only letters, digits and `._+=-`; no leading dot or dash (hidden files, option-like names)."""
    return _UNSAFE.sub("_", text).lstrip(".-") or "_"


def run_name(cfg: Config, varying: list[str]) -> str:
    """`<plan notation>[-<token per varying non-plan key>]-<hash>`."""
    parts = [safe(cfg.plan.notation())] + [token(k, v) for k, v in describe(cfg, varying).items()]
    readable = "-".join(parts)[:MAX_READABLE].rstrip("-")
    return f"{readable}-{config_hash(cfg)}"


def describe(cfg: Config, varying: list[str]) -> dict[str, Any]:
    """The varying non-plan values of one run, for listings: {"train.lr": 1e-4, ...}."""
    leaves = config_leaves(cfg)
    return {k: leaves.get(k) for k in varying if not k.startswith("plan.")}
