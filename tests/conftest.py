"""Every test runs on one torch thread (bit-for-bit comparisons need it) and restores the caller's setting."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
