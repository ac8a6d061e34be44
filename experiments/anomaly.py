"""One-class anomaly detection in the protocol of Ruff et al. (2018, Deep SVDD, ICML): ten MLP autoencoders,
one per digit, each trained only on its class's training digits, all ten as one vmapped program (a sweep
whose members are the classes). Each scores every test digit by its reconstruction error; the AUROC of
telling the nine other classes from its own is `test/auroc` per member, its mean over the ten
`test/auroc_mean`, and PCA fitted on the same class at the same code size stands beside each.

    python launch.py --config experiments/anomaly.py --workdir runs/anomaly
    python launch.py --config experiments/anomaly.py --workdir runs/anomaly_fashion --config.dataset=fashion_mnist

Classes differ in size (MNIST: 5,421 to 6,742 training digits): every member trains on as many digits per
epoch as the smallest class has, a fresh random subset of its own class each epoch. Pixels are the
project's [-1, 1] scale (Ruff et al. use global contrast normalisation and min-max scaling per class).
"""

from mnist_ae.config import base_config


def get_config():
    config = base_config()
    config.update(dict(
        task="sweep", normal_classes=tuple(range(10)), latent_dims=(16,), seeds=(0,), learning_rates=(1e-3,),
        hidden=(256, 128), batch_size=128, epochs=30, eval_every_epochs=10, analyze_at_end=False,
        latent_pictures=False))
    return config
