import os

import pytest
import torch

# The machine is shared: more threads than one collapse under contention.
torch.set_num_threads(1)
os.environ.setdefault("LAB_DEVICE", "cpu")


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)
