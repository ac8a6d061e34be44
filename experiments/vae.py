"""The variational autoencoder of Burda, Grosse & Salakhutdinov (2016), one stochastic layer: 784-200-200-50.

Two hidden layers of 200 each way, a Gaussian posterior with a diagonal covariance (mean and log-variance heads), a
standard normal prior and a Bernoulli decoder; trained on the ELBO (`beta` 1) with each round's digits
binarised afresh (dynamic binarisation, as the paper, after Salakhutdinov & Murray 2008). The test set is
binarised once, with a fixed key (`core.vae.EVAL_SEED`): every eval and every run score the same binary
digits. Each eval reports test/elbo and the 50-sample bound test/nll_iw50; after training, the 5,000-sample
bound test/nll_iw5000, the paper's measure (its Table 1: VAE k=1 86.76 nats).

    python launch.py --config experiments/vae.py --workdir runs/vae

Departures from the paper, for a 2-core CPU: ReLU for the paper's tanh (with tanh the training ELBO after
4,000 rounds of 100 digits was -120 nats against ReLU's -106, same seed: on a CPU budget the slower start
costs the result), batch 100 (the paper's 20), AdamW with a cosine decay over `epochs` (the paper's 3,280
passes with a stepped decay are days here), flax's LeCun-normal init (the paper's Glorot). A beta-VAE: --config.beta=4; a sweep of both: --config.task=sweep --config.latent_dims=50
--config.betas=1,4. An IWAE (the paper's k = 5 or 50): --config.train_iw_samples=5. At 150 epochs the test
NLL is 89.50 nats; 1,000 epochs give 87.03, continued to 1,400, 2,200 and 2,600 epochs (--config.epochs on
its workdir) 86.92, 86.79 and 86.74; the IWAE (k = 5) after 700 epochs 86.19 (docs/vae.md).
"""

from mnist_ae.config import base_config


def get_config():
    config = base_config()
    config.update(dict(
        model="vae", hidden=(200, 200), latent_dim=50, activation="relu", init="flax", beta=1.0,
        learning_rate=1e-3, lr_schedule="warmup_cosine", lr_warmup_steps=600, lr_end_factor=0.05, weight_decay=0.0,
        batch_size=100, epochs=150, eval_every_epochs=25, iw_samples=50, iw_samples_final=5000,
        best_checkpoint_metric="test/elbo", histogram_every_epochs=10))
    return config
