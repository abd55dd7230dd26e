import pytest
import torch


@pytest.fixture(autouse=True)
def restore_threads():
    """The benchmarks set torch's thread count for their own measurements; later tests get the old one back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
