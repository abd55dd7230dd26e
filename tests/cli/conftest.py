import pytest

from mile.engine.datasets import demo_root


@pytest.fixture
def demo_data():
    return demo_root()
