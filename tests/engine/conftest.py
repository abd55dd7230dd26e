import pytest

from mile.config import load_config
from mile.engine.datasets import demo_root

TINY = [
    "model.size=tiny",
    "model.image_size=32",
    "data.dataset=demo",
    "data.limit=24",
    "train.epochs=2",
    "train.batch_size=8",
    "train.lr=0.001",
    "train.log_every=1",
    "eval.batch_size=16",
    "eval.num_beams=2",
    "eval.max_new_tokens=4",
]


@pytest.fixture
def tiny_config():
    """A config that trains the tiny model on 24 demo questions in a second or two."""

    def make(*overrides: str):
        return load_config(None, [*TINY, *overrides])

    return make


@pytest.fixture
def demo_data():
    return demo_root()
