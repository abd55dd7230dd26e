"""Our vision tower vs transformers ViTModel / Dinov2Model, our text encoder vs BertModel (self-attention path)."""

import pytest
import torch
from torch.testing import assert_close
from transformers import BertConfig, BertModel, Dinov2Config, Dinov2Model, ViTConfig, ViTModel

from mile.model.checkpoints import compose
from mile.pretrained import bundled_vocab
from mile.tokenizer import MileTokenizer

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2)


def _perturb(model):
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, intermediate_size=64, max_position_embeddings=64, **SMALL)
    model = _perturb(BertModel(config))
    directory = tmp_path_factory.mktemp("bert")
    model.save_pretrained(directory)
    MileTokenizer(bundled_vocab()).save(directory)
    return directory, model


def _vision_dir(tmp_path_factory, kind):
    torch.manual_seed(0)
    if kind == "dinov2":
        model = Dinov2Model(
            Dinov2Config(image_size=56, patch_size=14, mlp_ratio=2, layerscale_value=0.5, **SMALL)
        )
    else:
        model = ViTModel(
            ViTConfig(image_size=64, patch_size=16, intermediate_size=64, **SMALL), add_pooling_layer=True
        )
    model = _perturb(model)
    directory = tmp_path_factory.mktemp(kind)
    model.save_pretrained(directory)
    return directory, model


@pytest.mark.parametrize("kind,size", [("dinov2", 56), ("dinov2", 84), ("vit", 64), ("vit", 96)])
def test_vision_tower_matches_transformers(tmp_path_factory, bert_dir, kind, size):
    """At the checkpoint's own size and at a larger one (position embeddings interpolated bicubically)."""
    vision_dir, theirs = _vision_dir(tmp_path_factory, kind)
    tok = MileTokenizer.from_dir(bert_dir[0])
    ours, report = compose(vision_dir, bert_dir[0], size, tok.special_ids())
    pixels = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = theirs(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
        got = ours.eval().encode_image(pixels)
    assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert (size != theirs.config.image_size) == any("pos_embed" in a for a in report.adapted)


def test_text_encoder_self_attention_path_matches_bert(tmp_path_factory, bert_dir):
    directory, bert = bert_dir
    vision_dir, _ = _vision_dir(tmp_path_factory, "vit")
    tok = MileTokenizer.from_dir(directory)
    ours, report = compose(vision_dir, directory, 64, tok.special_ids())
    ids = torch.randint(1000, 30000, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        expected = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        for tower in (ours.text_encoder, ours.text_decoder):  # both towers start from the same BERT
            if tower is ours.text_decoder:
                tower.causal = False
            got = tower.eval()(ids, mask)  # no context: the cross-attention is skipped
            assert_close(got[mask.bool()], expected[mask.bool()], rtol=1e-4, atol=1e-4)
    assert any("token-type" in a for a in report.adapted)
    fresh = report.initialised
    assert fresh and all(".cross_attn" in k or k.startswith("text_decoder.lm_head.") for k in fresh)
