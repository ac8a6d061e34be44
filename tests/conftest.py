"""Shared fixtures: small slices of the real MNIST and tiny configs, so each test takes seconds."""

from __future__ import annotations

import ml_collections
import pytest

from mnist_ae.config import base_config
from mnist_ae.data import Dataset, load_dataset


@pytest.fixture(scope="session")
def mnist() -> Dataset:
    return load_dataset("mnist")


def tiny(**overrides) -> ml_collections.ConfigDict:
    """A config that trains in about a second on CPU: 2048 real digits, a small MLP."""
    config = base_config()
    config.update(dict(train_limit=2048, test_limit=512, hidden=(64, 32), latent_dim=8, probe_hidden=(16,),
                       batch_size=64, epochs=2, eval_batch_size=256, log_every_steps=4, grid_digits=4,
                       projector_points=64, analyze_at_end=False, learning_rate=1e-2,
                       probe_learning_rate=1e-2))
    config.update(overrides)
    return config
