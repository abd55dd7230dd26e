"""mile-small composed from the real DINOv2-small and MiniLM-L6 checkpoints in ../shared."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.testing import assert_close
from transformers import Dinov2Model

from mile.model.config import size_config
from mile.model.generation import generate
from mile.pretrained import build


@pytest.fixture(scope="module")
def mile_small(shared_dir):
    w = shared_dir / "weights"
    return build("compose", vision=w / "dinov2-small", text=w / "minilm-l6-h384-uncased", image_size=224)


def test_composes_into_the_mile_small_size(mile_small):
    ours = mile_small.model.config
    table = size_config("mile-small", 224)
    assert (ours.vision, ours.text.width, ours.text.depth, ours.text.heads) == (
        table.vision,
        table.text.width,
        table.text.depth,
        table.text.heads,
    )
    assert mile_small.report.unexpected == []
    fresh = mile_small.report.initialised
    assert all(".cross_attn" in k or k.startswith("text_decoder.lm_head.") for k in fresh)
    assert len([k for k in fresh if k.startswith("text_encoder.")]) == 6 * 10  # q,k,v,o + norm, w+b, 6 layers


def test_vision_tower_matches_dinov2_on_a_real_image(mile_small, shared_dir):
    image = Image.open(shared_dir / "data" / "vqa_rad" / "images" / "synpic54610.jpg").convert("RGB")
    image = image.resize((224, 224), Image.BICUBIC)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 255.0
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    pixels = ((pixels - mean[:, None, None]) / std[:, None, None])[None]
    dinov2 = Dinov2Model.from_pretrained(shared_dir / "weights" / "dinov2-small", dtype=torch.float32).eval()
    with torch.no_grad():
        expected = dinov2(pixel_values=pixels).last_hidden_state
        got = mile_small.model.eval().encode_image(pixels)
    assert_close(got, expected, rtol=1e-3, atol=1e-3)


def test_generates_strings_end_to_end(mile_small):
    tok, model = mile_small.tokenizer, mile_small.model.eval()
    ids, mask = tok.encode_questions(["is there a fracture?", "which organ is shown?"])
    answers = tok.decode(generate(model, ids, mask, pixels=torch.randn(2, 3, 224, 224)))
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
