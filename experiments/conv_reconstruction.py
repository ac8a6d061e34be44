"""Conv autoencoder (the 50,161-parameter reference model) with the embedding probe.

    python launch.py --task reconstruction --config experiments/conv_reconstruction.py
"""

from mnist_ae.config import base_config


def get_config():
    config = base_config()
    config.model = "conv"
    return config
