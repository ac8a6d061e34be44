"""MLP autoencoder (784-128-64-64) on MNIST with the alternating embedding probe.

    python launch.py --task reconstruction

Reference init (PyTorch's uniform +-1/sqrt(fan_in)); 5 epochs, batch 256, AdamW 1e-3.
Variants: --config.latent_dim=3, --config.model=conv, --config.dataset=fashion_mnist.
"""

from mnist_ae.config import base_config


def get_config():
    return base_config()
