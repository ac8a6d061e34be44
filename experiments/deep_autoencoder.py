"""Hinton & Salakhutdinov's (2006) deep autoencoder, 784-1000-500-250-30 and back, trained the modern way.

No pretraining: GELU with a LayerNorm before it in every hidden layer, a sigmoid output with binary
cross-entropy on pixels in [0, 1], AdamW (second-moment decay 0.95) with a short warmup and a cosine
decay over the run, training digits shifted by up to a pixel. Batch 128, weight decay 0.05 and 11
epochs beat the paper's 3.00 in under 3 minutes of training on 2 CPU cores; --config.epochs=30 reaches
about 2.36 (the README's table gives the measurements behind them).

    python launch.py --config experiments/deep_autoencoder.py --workdir runs/deep_ae

The paper's Fig. 2B measure, the test set's squared error per image on [0, 1], is
`test/recon_sse01` (deep autoencoder 3.00, logistic PCA 8.01, PCA 13.87 at 30 units); other code
sizes: --config.latent_dim=2 (or 10, 64). The README's table gives the numbers and wall times.
"""

from mnist_ae.config import base_config


def get_config():
    config = base_config()
    config.update(dict(
        hidden=(1000, 500, 250), latent_dim=30, init="flax", activation="gelu", norm="layer", recon_loss="bce",
        learning_rate=2e-3, lr_schedule="warmup_cosine", lr_warmup_steps=200, weight_decay=0.05, adam_b2=0.95,
        augment_shift=1, batch_size=128, epochs=11, analyze_at_end=False))
    return config
