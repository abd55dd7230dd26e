import pytest

from mile.engine.build import demo_root


@pytest.fixture
def demo_data():
    return demo_root()
