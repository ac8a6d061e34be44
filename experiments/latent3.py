"""MLP autoencoder with a 3-unit code: the seed tutorial's "latent 3" model (218,643 parameters).

    python launch.py --task reconstruction --config experiments/latent3.py
"""

from mnist_ae.config import base_config


def get_config():
    config = base_config()
    config.latent_dim = 3
    return config
