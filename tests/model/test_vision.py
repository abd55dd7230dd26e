"""The vision tower split into a trunk and a head, and which leading blocks count as frozen."""

import torch

from mile.model.config import size_config
from mile.model.mile import MileModel
from mile.tuning.handle import apply_plan


def _tiny_vision(depth: int = 3):
    torch.manual_seed(0)
    cfg = size_config("tiny")
    cfg.vision.depth = depth
    cfg.vision.drop_path = 0.5  # stochastic in train mode: shows which blocks are left in eval mode
    return MileModel(cfg)


def test_trunk_then_head_is_the_forward():
    vision = _tiny_vision().vision.eval()
    pixels = torch.randn(2, 3, 32, 32)
    for depth in range(len(vision.blocks) + 1):
        assert torch.equal(vision.head(vision.trunk(pixels, depth), depth), vision(pixels))


def test_frozen_depth_counts_the_leading_blocks_nothing_trains():
    vision = _tiny_vision().vision
    vision.requires_grad_(False)
    assert vision.frozen_depth() == 3
    vision.norm.weight.requires_grad_(True)  # the final norm sits above every block
    assert vision.frozen_depth() == 3
    vision.blocks[2].mlp.fc1.weight.requires_grad_(True)
    assert vision.frozen_depth() == 2
    vision.blocks[1].norm1.bias.requires_grad_(True)
    assert vision.frozen_depth() == 1
    vision.pos_embed.requires_grad_(True)  # trained embeddings reach every block
    assert vision.frozen_depth() == 0


def test_a_trainable_parameter_outside_the_blocks_leaves_nothing_frozen():
    model = _tiny_vision()
    apply_plan(
        model,
        {
            "vision": {"method": "prefix", "num_virtual_tokens": 2, "encoder_hidden_size": 8},
            "text_encoder": "frozen",
            "text_decoder": "frozen",
        },
    )
    assert model.vision.frozen_depth() == 0  # the prefix encoder feeds every block's attention


def test_frozen_leading_blocks_stay_in_eval_mode():
    model = _tiny_vision()
    model.requires_grad_(False)
    model.vision.blocks[2].requires_grad_(True)
    model.text_decoder.requires_grad_(True)
    model.train()
    assert [b.training for b in model.vision.blocks] == [False, False, True]
    assert model.vision.training
    model.eval()
    assert not any(b.training for b in model.vision.blocks)
