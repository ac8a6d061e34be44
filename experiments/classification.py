"""Plain supervised MLP classifier (784-256-128-10) on MNIST pixels: the accuracy baseline.

    python launch.py --task classification
"""

from mnist_ae.config import base_config


def get_config():
    config = base_config()
    config.task = "classification"
    config.hidden = (256, 128)
    return config
