"""Parity with transformers' BlipForQuestionAnswering: same weights, same states, logits and answers."""

import pytest
import torch
from torch.testing import assert_close
from transformers import BlipForQuestionAnswering

from mile.model.checkpoints import load_hf_blip
from mile.model.generation import GenerationConfig, generate


@pytest.fixture(scope="module")
def pair(hf_blip_dir):
    directory, hf = hf_blip_dir
    ours, _, report = load_hf_blip(str(directory))
    return ours.eval(), hf, report


def test_load_report_explains_every_key(pair):
    _, _, report = pair
    assert report.unexpected == []
    assert report.initialised == []
    assert all("cls.predictions.decoder" in k or "position_ids" in k for k in report.ignored)


def test_image_and_question_states_match(pair, batch):
    ours, hf, _ = pair
    pixels, question, mask, _, _ = batch
    with torch.no_grad():
        image = hf.vision_model(pixel_values=pixels).last_hidden_state
        q_states = hf.text_encoder(input_ids=question, attention_mask=mask, encoder_hidden_states=image)[0]
        our_image = ours.encode_image(pixels)
        our_q = ours.encode_question(question, mask, our_image)
    assert_close(our_image, image)
    keep = mask.bool()  # padded question positions are never read downstream
    assert_close(our_q[keep], q_states[keep])


def test_decoder_logits_match(pair, batch):
    # transformers 5.x BLIP drops the cross-attention padding mask (BlipTextAttention never passes
    # encoder_attention_mask on), so compare on unpadded questions; padding is covered below.
    ours, hf, _ = pair
    pixels, question, _, answer, answer_mask = batch
    mask = torch.ones_like(question)
    with torch.no_grad():
        image = hf.vision_model(pixel_values=pixels).last_hidden_state
        q_states = hf.text_encoder(input_ids=question, attention_mask=mask, encoder_hidden_states=image)[0]
        logits = hf.text_decoder(
            input_ids=answer, attention_mask=answer_mask, encoder_hidden_states=q_states
        ).logits
        out = ours(question, mask, answer, answer_mask, pixels=pixels)
    keep = answer_mask.bool()
    assert_close(out.logits[keep], logits[keep], rtol=1e-4, atol=1e-4)


def test_padded_question_tokens_are_never_read(pair, batch):
    ours, _, _ = pair
    pixels, question, mask, answer, answer_mask = batch
    other = question.masked_fill(mask == 0, 4242)
    with torch.no_grad():
        a = ours(question, mask, answer, answer_mask, pixels=pixels).logits
        b = ours(other, mask, answer, answer_mask, pixels=pixels).logits
    assert_close(a, b)


def test_loss_matches_transformers_token_mean(pair, batch):
    ours, hf, _ = pair
    pixels, question, _, answer, answer_mask = batch
    mask = torch.ones_like(question)
    labels = answer.masked_fill(answer_mask == 0, -100)
    ours.config.label_smoothing = 0.0  # transformers' BLIP default
    try:
        with torch.no_grad():
            theirs = hf(
                input_ids=question,
                pixel_values=pixels,
                attention_mask=mask,
                labels=labels,
                decoder_input_ids=answer,
                decoder_attention_mask=answer_mask,
            ).loss
            mine = ours(question, mask, answer, answer_mask, pixels=pixels).loss
    finally:
        ours.config.label_smoothing = 0.1
    assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("num_beams", [1, 3, 4])
@pytest.mark.parametrize("eos_boost", [0.0, 1.3, 1.5, 1.7])
@pytest.mark.parametrize("min_new", [0, 1])
def test_generated_answers_match(hf_blip_dir, num_beams, eos_boost, min_new):
    """eos_boost raises [SEP]'s logit so hypotheses end at different steps, exercising beam bookkeeping."""
    directory, _ = hf_blip_dir
    hf = BlipForQuestionAnswering.from_pretrained(directory).eval()
    ours, _, _ = load_hf_blip(str(directory))
    ours.eval()
    eos = ours.config.eos_token_id
    with torch.no_grad():
        hf.text_decoder.cls.predictions.bias[eos] += eos_boost
        ours.text_decoder.lm_head.bias[eos] += eos_boost
    torch.manual_seed(2)
    pixels = torch.randn(6, 3, 32, 32)
    question = torch.randint(1000, 30000, (6, 6))
    question[:, 0] = 30523
    mask = torch.ones_like(question)  # transformers' generate ignores the question mask: compare unpadded
    with torch.no_grad():
        theirs = hf.generate(
            input_ids=question,
            pixel_values=pixels,
            attention_mask=mask,
            num_beams=num_beams,
            max_new_tokens=10,
            min_new_tokens=min_new,
            do_sample=False,
        )
    mine = generate(
        ours,
        question,
        mask,
        pixels=pixels,
        config=GenerationConfig(num_beams=num_beams, max_new_tokens=10, min_new_tokens=min_new),
    )
    theirs = theirs[:, 1:]  # drop [DEC]
    width = max(theirs.shape[1], mine.shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=0)  # noqa: E731
    theirs = _cut_after_eos(pad(theirs), eos)
    assert torch.equal(pad(mine), theirs)
    lengths = ((mine != eos) & (mine != 0)).sum(1)
    assert eos_boost == 0.0 or 0 < lengths.sum() < 10 * len(lengths), (
        "the boost should end some answers early"
    )


def _cut_after_eos(seqs, eos):
    after = (seqs == eos).long().cumsum(1) - (seqs == eos).long() > 0
    return seqs.masked_fill(after, 0)
