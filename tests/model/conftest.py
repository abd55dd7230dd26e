import pytest
import torch
from transformers import BlipConfig, BlipForQuestionAnswering

TINY_TEXT = dict(
    vocab_size=30524,
    hidden_size=32,
    encoder_hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
TINY_VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    image_size=32,
    patch_size=8,
)


@pytest.fixture(scope="session")
def hf_blip_dir(tmp_path_factory):
    """A tiny random transformers BlipForQuestionAnswering saved in the blip-vqa-base layout."""
    torch.manual_seed(0)
    config = BlipConfig(text_config=TINY_TEXT, vision_config=TINY_VISION)
    model = BlipForQuestionAnswering(config).eval()
    with torch.no_grad():  # random init leaves LayerNorms at identity and biases at zero: perturb everything
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.05 if "embedding" in name else 0.3))
    directory = tmp_path_factory.mktemp("blip_hf")
    model.save_pretrained(directory)
    return directory, model


@pytest.fixture
def batch():
    torch.manual_seed(1)
    pixels = torch.randn(3, 3, 32, 32)
    question = torch.randint(1000, 30000, (3, 7))
    question[:, 0] = 30523  # [ENC]
    mask = torch.ones_like(question)
    mask[1, 5:] = 0
    mask[2, 4:] = 0
    answer = torch.randint(1000, 30000, (3, 5))
    answer[:, 0] = 30522  # [DEC]
    answer_mask = torch.ones_like(answer)
    answer_mask[0, 3:] = 0
    return pixels, question, mask, answer, answer_mask
