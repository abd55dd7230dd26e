"""The optimizer's learning rates per parameter: roles, and the ViT's layer-wise decay."""

import pytest

from mile.config import load_config
from mile.engine.optim import make_optimizer, make_scheduler
from mile.model.config import size_config
from mile.model.mile import MileModel
from mile.tuning import apply_plan

LR, DECAY = 1e-3, 0.5


def _rates(overrides: list[str]) -> dict[str, float]:
    """Parameter name -> its group's learning rate, for the tiny model (2 vision blocks) under `overrides`."""
    cfg = load_config(
        None, ["plan.vision=full", "plan.text_encoder=full", "plan.text_decoder=full", *overrides]
    )
    model = MileModel(size_config("tiny"))
    apply_plan(model, cfg.plan)
    optimizer = make_optimizer(model, cfg.train, adapters=set(), fresh=set())
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g["lr"] for g in optimizer.param_groups for p in g["params"]}


def _expected(name: str) -> float:
    # worked out by hand for 2 blocks: block 1 one layer below the top, block 0 two, embeddings three
    for prefix, below in (("vision.blocks.1.", 1), ("vision.blocks.0.", 2), ("vision.patch_embed.", 3)):
        if name.startswith(prefix):
            return LR * DECAY**below
    if name in ("vision.cls_token", "vision.pos_embed"):
        return LR * DECAY**3
    return LR  # the final norm and the text towers


def test_layer_decay_scales_each_vision_layer():
    rates = _rates([f"train.lr={LR}", f"train.layer_decay={DECAY}"])
    assert len(rates) == sum(1 for _ in MileModel(size_config("tiny")).parameters())
    for name, lr in rates.items():
        assert lr == pytest.approx(_expected(name)), name
    assert rates["vision.norm.weight"] == LR and rates["vision.blocks.0.attn.q.weight"] == LR / 4


def test_without_layer_decay_every_base_parameter_has_the_base_rate():
    assert set(_rates([f"train.lr={LR}"]).values()) == {LR}


def test_the_schedule_keeps_the_layer_ratios():
    cfg = load_config(None, ["plan.vision=full", f"train.lr={LR}", f"train.layer_decay={DECAY}"])
    model = MileModel(size_config("tiny"))
    apply_plan(model, cfg.plan)
    optimizer = make_optimizer(model, cfg.train, adapters=set(), fresh=set())
    scheduler = make_scheduler(optimizer, cfg.train, total_steps=10)
    start = [g["lr"] for g in optimizer.param_groups]
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    factor = scheduler.get_last_lr()[0] / start[0]
    assert 0 < factor < 1
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([x * factor for x in start])
