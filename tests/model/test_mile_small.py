"""mile-small composed from the real DINOv2-small and MiniLM-L6 checkpoints in ../shared."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.testing import assert_close
from transformers import Dinov2Model

from mile.model.config import size_config
from mile.model.generation import GenerationConfig, _beam_search, _Decoder, generate
from mile.pretrained import build


@pytest.fixture(scope="module")
def mile_small(shared_dir):
    w = shared_dir / "weights"
    torch.manual_seed(0)  # the freshly initialised cross-attention and LM head: the same model every session
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


def _decode_uncached(model, question_states, question_mask, tokens):
    """Next-token log-probabilities after `tokens` (N, t), [DEC] first, recomputing the decoder over the whole
    prefix (no key/value cache), with [SEP] barred at the first step as generation's min_new_tokens=1."""
    decoder = model.text_decoder
    states = decoder(tokens, context=question_states, context_mask=question_mask.bool())
    log_probs = torch.log_softmax(decoder.logits(states[:, -1]).float(), dim=-1)
    if tokens.shape[1] == 1:
        log_probs[:, model.config.eos_token_id] = float("-inf")
    return log_probs


class _UncachedDecoder(_Decoder):
    """generation's decoder interface without a cache: each step reruns the decoder over the whole prefix."""

    def __init__(self, model, question_states, question_mask):
        super().__init__(model, question_states, question_mask.bool(), min_new_tokens=1)
        self.tokens = None

    def step(self, tokens):
        self.tokens = tokens[:, None] if self.tokens is None else torch.cat([self.tokens, tokens[:, None]], 1)
        return _decode_uncached(self.model, self.context, self.context_mask, self.tokens)

    def reorder(self, index):
        self.tokens = None if self.tokens is None else self.tokens.index_select(0, index)
        self.context = self.context.index_select(0, index)
        self.context_mask = self.context_mask.index_select(0, index)


SPECIAL_TOKENS = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}


def _plain_text(tok, row):
    """The answer a row of ids spells, read off vocab.txt: word pieces up to [SEP], specials dropped, no spaces."""
    vocab = tok.vocab_file.read_text(encoding="utf-8").split("\n")
    pieces = []
    for i in row:
        if i == tok.sep_token_id:
            break
        if vocab[i] not in SPECIAL_TOKENS and i not in (tok.bos_token_id, tok.enc_token_id):
            pieces.append(vocab[i].removeprefix("##"))
    return "".join(pieces)


def test_generates_strings_end_to_end(mile_small):
    tok, model = mile_small.tokenizer, mile_small.model.eval()
    ids, mask = tok.encode_questions(["is there a fracture?", "which organ is shown?"])
    # [ENC] is there a fracture ? [SEP] / [ENC] which organ is shown ? [SEP]: BERT vocab.txt line numbers
    assert ids.tolist() == [
        [30523, 2003, 2045, 1037, 19583, 1029, 102],
        [30523, 2029, 5812, 2003, 3491, 1029, 102],
    ]
    assert mask.tolist() == [[1] * 7] * 2
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        question_states = model.encode_question(ids, mask, model.encode_image(pixels))

        # greedy with the key/value cache == argmax decoding that recomputes the whole prefix every step
        greedy = generate(
            model, ids, mask, pixels=pixels, config=GenerationConfig(num_beams=1, max_new_tokens=6)
        )
        tokens = torch.full((2, 1), model.config.bos_token_id)
        done = torch.zeros(2, dtype=torch.bool)
        for _ in range(6):
            nxt = _decode_uncached(model, question_states, mask, tokens).argmax(-1)
            nxt = nxt.masked_fill(done, tok.pad_token_id)
            done |= nxt == tok.sep_token_id
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        assert greedy.tolist() == tokens[:, 1:].tolist()

        # the default search (3 beams) with the cache == the same search over the uncached decoder
        beams = generate(model, ids, mask, pixels=pixels)
        uncached = _UncachedDecoder(model, question_states, mask)
        first = uncached.step(torch.full((2,), model.config.bos_token_id))
        assert (
            beams.tolist()
            == _beam_search(uncached, first, model.config, GenerationConfig())[0][:, 0].tolist()
        )

    for out in (greedy, beams):
        answers = tok.decode(out)
        assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
        assert [a.replace(" ", "") for a in answers] == [_plain_text(tok, row) for row in out.tolist()]
