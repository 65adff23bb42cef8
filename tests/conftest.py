import os

import pytest
import torch

# The machine is shared: more threads than one collapse under contention.
torch.set_num_threads(1)
os.environ.setdefault("LAB_DEVICE", "cpu")


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def ring_model():
    """A ScoreMLP trained on the ring data set with TrainConfig defaults at 2000 steps
    (about 15 s on one CPU thread), shared by the tests that need a trained network."""
    from lab.data import make_dataset
    from lab.train import TrainConfig, train

    x = make_dataset("ring", n=20_000, seed=0)
    return train(x, TrainConfig(steps=2000, device="cpu"))


@pytest.fixture
def true_samples():
    """``draw(session, n=4000, seed=5)``: true samples of a session's data set where sampling
    ends (its exact field's law at t_min), to hold a page's samples to."""
    from lab.fields import noised_samples

    def draw(session, n=4000, seed=5):
        exact = session.exact
        return noised_samples(exact, exact.schedule.t_min, n, generator=torch.Generator().manual_seed(seed))
    return draw
