"""mile.engine.probe: the answer loss with swapped inputs tells a model that uses them from one that does not."""

import pytest
import torch

from mile.engine.build import build_session
from mile.engine.datasets import load_split
from mile.engine.probe import derangement, probe_inputs


@pytest.mark.parametrize("n", [2, 3, 17])
def test_derangement_moves_every_question(n):
    d = derangement(n, seed=n)
    assert sorted(d.tolist()) == list(range(n)) and all(d[i] != i for i in range(n))


def test_one_question_cannot_be_probed():
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, seed=0)


@pytest.fixture
def session_and_samples(tiny_config):
    """The tiny model with large cross-attention weights: at the usual init (std 0.02) the inputs move the loss
    by ~1e-6 nats, which is the point of probing a trained model and useless for testing the probe."""
    cfg = tiny_config()
    torch.manual_seed(0)
    session = build_session(cfg)
    with torch.no_grad():
        for name, param in session.model.named_parameters():
            if ".cross_attn." in name and name.endswith("weight"):
                param.normal_(std=0.3)
    return session, load_split(cfg, "test").samples[:20]


def silence(model, tower):
    with torch.no_grad():
        for layer in getattr(model, tower).layers:
            layer.cross_attn.o.weight.zero_()
            layer.cross_attn.o.bias.zero_()


def test_a_model_wired_to_both_inputs_uses_both(session_and_samples):
    session, samples = session_and_samples
    result = probe_inputs(session, samples, batch_size=8)
    assert result["n"] == 20 and result["answer_tokens"] > 20
    assert abs(result["gap"]["image"]) > 1e-3 and abs(result["gap"]["question"]) > 1e-3
    assert result["uses_both"] == (min(result["gap"]["image"], result["gap"]["question"]) >= 0.01)
    assert probe_inputs(session, samples, batch_size=8) == result  # deterministic for a seed


def test_cutting_the_image_path_shows_as_an_ignored_image(session_and_samples):
    session, samples = session_and_samples
    silence(session.model, "text_encoder")  # the JTM no longer sees the image
    result = probe_inputs(session, samples, batch_size=8)
    assert abs(result["gap"]["image"]) < 1e-5 and abs(result["gap"]["question"]) > 1e-3
    assert result["verdict"].startswith("ignores the image")


def test_cutting_the_decoder_off_shows_as_the_answer_prior(session_and_samples):
    session, samples = session_and_samples
    silence(session.model, "text_decoder")  # the decoder no longer sees question or image
    result = probe_inputs(session, samples, batch_size=8)
    assert max(abs(g) for g in result["gap"].values()) < 1e-5
    assert "answer prior" in result["verdict"] and not result["uses_both"]


def test_the_answer_type_breakdown_adds_up_to_the_whole(session_and_samples, tiny_config):
    session, _ = session_and_samples
    split = load_split(tiny_config(), "test").samples
    samples = [s for s in split if s.answer_type == "OPEN"][:8] + [
        s for s in split if s.answer_type == "CLOSED"
    ][:12]
    result = probe_inputs(session, samples, batch_size=8)
    parts = result["by_answer_type"]
    assert set(parts) == {s.answer_type.lower() for s in samples} and len(parts) == 2  # the fixture has both
    assert sum(p["n"] for p in parts.values()) == len(samples) == result["n"]
    assert sum(p["answer_tokens"] for p in parts.values()) == result["answer_tokens"]
    for variant, loss in result["loss"].items():  # the whole is the token-weighted mean of its parts
        weighted = sum(p["loss"][variant] * p["answer_tokens"] for p in parts.values())
        assert weighted / result["answer_tokens"] == pytest.approx(loss, rel=1e-9)
