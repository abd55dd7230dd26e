"""Parameter accounting: trainable / total per tower and overall, as the paper's #Params column counts them.

Every parameter is counted once, however many modules share it (the decoder's LM head reuses the word embeddings),
and the parameters a method adds (adapters, prefixes) count in the total of the tower they sit in.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mile.tuning.base import TOWERS


def count_parameters(model: nn.Module) -> dict[str, Any]:
    """`{"towers": {tower: {"params", "trainable"}}, "total", "trainable", "trainable_pct"}`; parameters outside
    the towers, if any, appear under towers["other"]."""
    towers = {t: {"params": 0, "trainable": 0} for t in TOWERS if hasattr(model, t)}
    for name, p in model.named_parameters():  # named_parameters yields a shared parameter once
        root = name.split(".", 1)[0]
        slot = towers.setdefault(root if root in towers else "other", {"params": 0, "trainable": 0})
        slot["params"] += p.numel()
        slot["trainable"] += p.numel() if p.requires_grad else 0
    total = sum(t["params"] for t in towers.values())
    trainable = sum(t["trainable"] for t in towers.values())
    return {
        "towers": towers,
        "total": total,
        "trainable": trainable,
        "trainable_pct": 100.0 * trainable / total if total else 0.0,
    }
