"""Latent sizes 2, 3, 5, 10 and 50 trained together in one vmapped program (the seed tutorial's sweep).

    python launch.py --task sweep --config.latent_dims=2,3,5,10,50 --config.seeds=0,1,2

Every member is the MLP autoencoder with its own alternating probe; add learning rates with
--config.learning_rates=1e-3,3e-3. Conv sweeps vary seeds and learning rates only:
--config.model=conv --config.latent_dims=256.
"""

from mnist_ae.config import base_config


def get_config():
    config = base_config()
    config.task = "sweep"
    return config
