import pytest
import torch
from tuning_helpers import make_batch, tiny_model


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """The tiny model gains nothing from intra-op threads, and on a busy CPU their spin-waiting makes each
    small op orders of magnitude slower; restored afterwards for the other test packages."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def base():
    """The untuned tiny model; tests deep-copy it rather than change it."""
    return tiny_model()


@pytest.fixture(scope="session")
def batch():
    return make_batch()
