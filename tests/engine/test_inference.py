"""mile.engine.inference.answer: what it refuses before it loads an image or generates anything."""

import pytest

from mile.config import MAX_BEAMS, ConfigError
from mile.data.errors import DataError
from mile.engine.build import build_session
from mile.engine.inference import answer


@pytest.fixture
def session_and_image(tiny_config, demo_data):
    """An untrained tiny model (answer needs no trained weights) and a demo image."""
    return build_session(tiny_config()), str(sorted((demo_data / "images").iterdir())[0])


def test_blank_questions_are_refused_naming_their_position(session_and_image):
    session, image = session_and_image
    cases = [
        ([""], "1 of 1"),
        (["what organ?", "  \t"], "2 of 2"),
        (
            ["\u200b", "what organ?"],
            "1 of 2",
        ),  # a zero-width space: str.strip() keeps it, the tokenizer does not
    ]
    for questions, position in cases:
        with pytest.raises(DataError, match=f"question {position} is blank"):
            answer(session, image, questions)
    with pytest.raises(DataError, match="no questions"):
        answer(session, image, [])
    with pytest.raises(DataError, match="a list of strings"):  # not one question per character
        answer(session, image, "what organ?")


def test_beam_counts_outside_eval_num_beams_bounds_are_refused(session_and_image):
    session, image = session_and_image
    for beams in (0, -2, MAX_BEAMS + 1, True, 2.5):  # 0 used to fall back to the run's count silently
        with pytest.raises(ConfigError, match=f"num_beams must be an integer from 1 to {MAX_BEAMS}"):
            answer(session, image, ["what organ?"], num_beams=beams)
    assert len(answer(session, image, ["is there a fracture?", "what organ?"], num_beams=1)) == 2
    assert session.config.eval.generation().num_beams == session.config.eval.num_beams == 2  # None: the run's
    assert session.config.eval.generation(MAX_BEAMS).num_beams == MAX_BEAMS
