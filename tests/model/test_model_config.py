import pytest
import torch
import torch.nn.functional as F

from mile.model.config import MileConfig, size_config
from mile.model.mile import MileModel


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_blip_base_at_480px_has_the_papers_parameter_counts():
    with torch.device("meta"):
        model = MileModel(size_config("blip-base", 480))
    assert _count(model) == 361_478_972
    assert [_count(model.tower(t)) for t in ("vision", "text_encoder", "text_decoder")] == [
        86_339_328,
        137_258_496,
        137_881_148,
    ]
    assert model.vision.pos_embed.shape[1] == 901


def test_module_names_are_uniform_across_towers():
    names = {n for n, _ in MileModel(size_config("tiny")).named_modules()}
    for name in (
        "vision.blocks.1.attn.q",
        "vision.blocks.0.mlp.fc2",
        "text_encoder.layers.1.cross_attn.v",
        "text_encoder.layers.0.self_attn.o",
        "text_decoder.layers.0.mlp.fc2",
        "text_decoder.lm_head.dense",
    ):
        assert name in names


def test_unknown_size_and_bad_values_name_the_key():
    with pytest.raises(ValueError, match="valid sizes"):
        size_config("huge")
    with pytest.raises(ValueError, match="vision.image_size 100 is not a multiple of vision.patch_size 16"):
        size_config("blip-base", 100)
    with pytest.raises(ValueError, match=r"unknown model config key\(s\) \['vision.depht'\]"):
        MileConfig.from_dict({"vision": {"depht": 3}})


def test_config_dict_round_trip():
    cfg = size_config("mile-small", 112)
    assert MileConfig.from_dict(cfg.to_dict()) == cfg


def test_loss_ignores_padded_answer_tokens():
    torch.manual_seed(0)
    model = MileModel(size_config("tiny")).eval()
    q, pixels = torch.randint(1000, 3000, (2, 5)), torch.randn(2, 3, 32, 32)
    a = torch.randint(1000, 3000, (2, 4))
    am = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    other = a.clone()
    other[1, 2:] = 7  # change only padded answer tokens
    with torch.no_grad():
        loss = model(q, torch.ones_like(q), a, am, pixels=pixels).loss
        loss2 = model(q, torch.ones_like(q), other, am, pixels=pixels).loss
    torch.testing.assert_close(loss, loss2)


def test_loss_backpropagates_to_every_tower():
    torch.manual_seed(0)
    model = MileModel(size_config("tiny")).double()
    q, a = torch.randint(1000, 3000, (2, 5)), torch.randint(1000, 3000, (2, 4))
    batch = dict(
        question_ids=q,
        question_mask=torch.ones_like(q),
        answer_ids=a,
        answer_mask=torch.ones_like(a),
        pixels=torch.randn(2, 3, 32, 32, dtype=torch.float64),
    )

    def next_token_loss():  # the loss the model should report, in float64: token i+1 from position i
        logits = model(**batch).logits
        return F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), a[:, 1:].reshape(-1), label_smoothing=0.1
        )

    out = model(**batch)
    torch.testing.assert_close(out.loss.double(), next_token_loss(), rtol=1e-6, atol=0)
    out.loss.backward()
    eps = 1e-5
    for tower in ("vision", "text_encoder", "text_decoder"):
        params = list(model.tower(tower).parameters())
        assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in params), tower
        assert all(p.grad.abs().sum() > 0 for p in params), f"a {tower} parameter got an all-zero gradient"
        # the gradients are the loss's derivative: along a random direction in the tower's parameters, the
        # slope they give equals the central difference of the loss
        directions = [torch.randn_like(p) for p in params]
        slope = sum((p.grad * d).sum() for p, d in zip(params, directions, strict=True))
        with torch.no_grad():
            losses = []
            for sign in (1, -1):
                for p, d in zip(params, directions, strict=True):
                    p.add_(sign * eps * d)
                losses.append(next_token_loss())
                for p, d in zip(params, directions, strict=True):
                    p.sub_(sign * eps * d)
        numeric = (losses[0] - losses[1]) / (2 * eps)
        torch.testing.assert_close(slope, numeric, rtol=1e-4, atol=0, msg=lambda m, t=tower: f"{t}: {m}")
