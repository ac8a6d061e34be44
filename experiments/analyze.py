"""Embedding analysis of a finished or interrupted reconstruction run, from its latest checkpoint.

    python launch.py --task analyze --workdir runs/reconstruction

PCA and t-SNE (2-D, 3-D), correlation heatmap, histograms, statistics, quality numbers for the
codes and for raw pixels, into RUN/analysis/. Options: --config.tsne_backend=sklearn,
--config.analysis_subsample=N (default: all test codes).
"""

from mnist_ae.config import base_config


def get_config():
    config = base_config()
    config.task = "analyze"
    return config
