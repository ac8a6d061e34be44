"""Every configuration key, its default and its meaning, in one place.

Experiment files in `experiments/` start from `base_config()` and change a few values; the CLI
overrides any key with `--config.KEY=VALUE`. `validate` rejects bad values before any compute so
a typo costs a second, not an epoch.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import ml_collections

from mnist_ae.errors import ConfigError  # noqa: F401  (callers catch it from here, where the keys are)


LOG_FRAMEWORKS = ("tensorboard", "wandb", "both", "none")
# backend -> the module it needs ("auto": the exact JAX t-SNE up to 3,000 points, openTSNE above)
TSNE_BACKENDS = {"auto": "openTSNE", "exact": "jax", "opentsne": "openTSNE", "sklearn": "sklearn", "umap": "umap"}
MIN_ANALYSIS_POINTS = 100  # kNN, logistic regression on a split, trustworthiness need a few per class


@dataclasses.dataclass(frozen=True)
class Field:
    """One config key: its default, what it means, its `--config.help` section, and what a resume
    must match: "state" keys (shapes or meaning of the saved state) always, "run" keys in a single
    run's checkpoint and "sweep" keys in a sweep's (a sweep sets its members' values by its lists).
    `epochs` is free on purpose: raising it continues a finished run."""

    section: str
    resume: str
    default: Any
    meaning: str


# The single source for defaults, `--config.help`, validation and the resume check.
FIELDS: dict[str, Field] = {
    "task": Field("run", "state", "reconstruction", "the task to train or analyse (python launch.py --help lists "
                  "every task; mnist_ae.tasks.TASKS holds them)"),
    "seed": Field("run", "run", 0, "seed for parameter init and the on-device data order"),
    "dataset": Field("data", "state", "mnist", "mnist | fashion_mnist"),
    "data_dir": Field("data", "", "", "folder with the IDX .gz files ('' = the repo's data/mnist, or "
                     "/usr/share/datasets/fashion-mnist for fashion_mnist)"),
    "data_source": Field("data", "", "idx", "idx (local IDX files) | tfds (tensorflow-datasets, needs internet)"),
    "train_limit": Field("data", "state", 0, "use only the first N training examples (0 = all)"),
    "test_limit": Field("data", "", 0, "use only the first N test examples (0 = all)"),
    "normal_class": Field("data", "state", -1, "one-class training: only the training digits of this class "
                          "(anomaly detection; -1 = every class)"),
    "model": Field("model", "state", "mlp", "mlp | conv | vae (conv: the reference 50,161-parameter conv autoencoder; "
                   "vae: the MLP as a variational autoencoder, Bernoulli pixels, trained on the ELBO)"),
    "hidden": Field("model", "state", (128, 64), "hidden widths of the MLP encoder (the decoder mirrors them) or classifier"),
    "latent_dim": Field("model", "run", 64, "size of the MLP code (the conv code is fixed at 2x2x64 = 256)"),
    "init": Field("model", "state", "torch", "torch (uniform +-1/sqrt(fan_in), the reference recipe) | flax (lecun_normal)"),
    "activation": Field("model", "state", "relu", "relu | gelu | tanh: the MLP autoencoder's hidden layers (the conv "
                        "model and the probe keep relu)"),
    "norm": Field("model", "state", "none", "none | layer: a LayerNorm between each hidden Dense and its activation "
                  "in the MLP autoencoder (the probe and the classifier keep none)"),
    "recon_loss": Field("model", "state", "mse", "mse (tanh output, MSE on pixels in [-1, 1], the reference recipe) | "
                        "bce (sigmoid output, binary cross-entropy on pixels in [0, 1])"),
    "beta": Field("model", "run", 1.0, "vae: the KL's weight (1 = the ELBO; above 1 a beta-VAE)"),
    "kl_warmup_steps": Field("model", "state", 0, "vae: rounds over which the KL's weight ramps up from 0 (0 = none)"),
    "train_iw_samples": Field("model", "state", 1, "vae: samples per digit in the training objective: 1 = the ELBO "
                              "(a VAE), k > 1 = the k-sample importance-weighted bound (an IWAE, Burda et al. 2016; "
                              "the decoder runs k times per digit)"),
    "probe_hidden": Field("model", "state", (64,), "hidden widths of the probe classifier on the code (() = linear probe)"),
    "learning_rate": Field("optimisation", "run", 1e-3, "AdamW learning rate of the autoencoder / classifier"),
    "lr_schedule": Field("optimisation", "state", "constant", "constant (the reference recipe) | warmup_cosine: "
                         "linear warmup from 0 over lr_warmup_steps, then cosine decay over the rest of `epochs` "
                         "(the autoencoder / classifier; sweeps scale it by each member's rate)"),
    "lr_warmup_steps": Field("optimisation", "state", 0, "warmup_cosine: rounds of linear warmup"),
    "lr_end_factor": Field("optimisation", "state", 0.0, "warmup_cosine: the final rate as a fraction of the peak"),
    "probe_learning_rate": Field("optimisation", "state", 1e-3, "AdamW learning rate of the probe"),
    "weight_decay": Field("optimisation", "state", 1e-5, "AdamW weight decay (both optimizers)"),
    "adam_b2": Field("optimisation", "state", 0.999, "AdamW's second-moment decay (both optimizers)"),
    "batch_size": Field("optimisation", "state", 256, "global batch size"),
    "epochs": Field("optimisation", "", 5, "training epochs"),
    "augment_shift": Field("optimisation", "state", 0, "shift each training digit by a random whole number of "
                           "pixels in [-N, N] along each axis, fresh each round (0 = none; the test set is never shifted)"),
    "input_noise": Field("optimisation", "state", "", "a denoising autoencoder: each training input corrupted afresh "
                         "each round, its clean digit the target: gaussian:SIGMA | masking:P (on [0, 1] pixels; "
                         "'' = none)"),
    "ae_steps": Field("optimisation", "state", 1, "autoencoder updates per round (each on its own batch)"),
    "probe_steps": Field("optimisation", "state", 1, "probe updates per round, on the round's codes with the AE frozen"),
    "eval_every_epochs": Field("logging", "", 1, "evaluate on the whole test set every N epochs (and at step 0)"),
    "eval_batch_size": Field("logging", "", 1000, "test examples per evaluation chunk"),
    "log_every_steps": Field("logging", "", 50, "average train metrics over windows of this many rounds"),
    "checkpoint_every_epochs": Field("logging", "", 1, "save a checkpoint every N epochs (and at the end)"),
    "keep_checkpoints": Field("logging", "", 3, "keep the last K checkpoints"),
    "best_checkpoint_metric": Field("logging", "", "test/recon_mse", "also keep the checkpoint with the best "
                                    "value of this test metric (highest for accuracies, else lowest; '' = none)"),
    "iw_samples": Field("logging", "", 50, "vae: importance samples per test digit of each eval's bound test/nll_iwK"),
    "iw_samples_final": Field("logging", "", 0, "vae: importance samples per test digit of the bound computed after "
                              "training (0 = none; Burda et al. report 5000)"),
    "grid_digits": Field("logging", "", 10, "test digits in the reconstruction grid"),
    "histogram_every_epochs": Field("logging", "", 1, "code (z/*) and weight histograms every N epochs (0 = never; sweeps log none)"),
    "projector_every_evals": Field("logging", "", 0, "TensorBoard projector every N evals (0 = only at the end)"),
    "projector_points": Field("logging", "", 2000, "test codes in the TensorBoard projector"),
    "analyze_at_end": Field("analysis", "", True, "run the embedding analysis at the end of a reconstruction run "
                            "(a sweep: every member's quality numbers and 2-D map)"),
    "evaluate_denoising": Field("analysis", "", False, "after training, reconstruct noisy test digits and score them "
                                "against PCA's and the noisy digits (always for a run trained with input_noise)"),
    "latent_pictures": Field("analysis", "", True, "decoded class means, interpolations and (2-unit codes) the "
                             "manifold at the end of an autoencoder run or sweep"),
    "tsne_backend": Field("analysis", "", "auto", "auto (exact up to 3,000 points, else opentsne) | exact (JAX, "
                          "every pair) | opentsne (FFT) | sklearn | umap (umap: pip install -e '.[tsne]')"),
    "analysis_subsample": Field("analysis", "", 0, "analyse a fixed subset of N test codes (0 = all; the 3-D t-SNE "
                                 "always keeps a subset of 2000)"),
    "analyze_checkpoint": Field("analysis", "", "latest", "--task analyze: which checkpoint: latest | best "
                                "(by best_checkpoint_metric) | an epoch number"),
    "report_at_end": Field("report", "", True, "write WORKDIR/report.html at the end of a run or sweep (needs the "
                           "report extra: pip install -e '.[report]'; without it the run says so and goes on)"),
    "report_codes": Field("report", "", 2000, "test codes saved at each eval to WORKDIR/codes/ for the report's "
                          "latent-space-forming map (0 = none)"),
    "wandb_project": Field("wandb", "", "mnist_ae", "W&B project"),
    "wandb_entity": Field("wandb", "", "", "W&B entity ('' = your default)"),
    "run_name": Field("wandb", "", "", "run name ('' = the workdir's name)"),
    "wandb_group": Field("wandb", "", "", "W&B group"),
    "wandb_tags": Field("wandb", "", (), "W&B tags"),
    "latent_dims": Field("sweep", "sweep", (2, 3, 5, 10, 50), "sweep: latent sizes trained together (pad-and-mask)"),
    "seeds": Field("sweep", "sweep", (0,), "sweep: seeds"),
    "learning_rates": Field("sweep", "sweep", (1e-3,), "sweep: autoencoder learning rates"),
    "betas": Field("sweep", "sweep", (1.0,), "sweep: the vae's KL weights"),
    "normal_classes": Field("sweep", "sweep", (), "sweep: one-class members, each trained on one class's digits "
                            "and scored by AUROC at detecting the other classes (() = none)"),
    "num_devices": Field("scale", "", 0, "devices to train on (0 = all local devices)"),
    "member_devices": Field("scale", "", 0, "sweep: groups of devices the members are split over, each training "
                            "its own members (0 = the most that divide the member and device counts; the devices "
                            "of a group split each batch)"),
}


def resume_keys(task: str) -> tuple[str, ...]:
    """The keys a resume of a `task` checkpoint must match (an exported sweep member is a single run)."""
    kind = "sweep" if task == "sweep" else "run"
    return tuple(k for k, f in FIELDS.items() if f.resume in ("state", kind))


def base_config() -> ml_collections.ConfigDict:
    """Defaults for every key; experiments override a few."""
    return ml_collections.ConfigDict({k: f.default for k, f in FIELDS.items()})


def help_text() -> str:
    """Every key with its default and meaning, for `--config.help`."""
    width, lines, section = max(map(len, FIELDS)), [], ""
    for k, f in FIELDS.items():
        if f.section != section:
            section = f.section
            lines.append(f"{section}:")
        lines.append(f"  {k:<{width}}  {f.default!r:<20} {f.meaning}" + ("  [fixed on resume]" if f.resume else ""))
    return "\n".join(lines)


def closest_key(key: str) -> str:
    """The valid key nearest to a misspelt one, for error messages."""
    match = difflib.get_close_matches(key, list(FIELDS), n=1, cutoff=0.0)
    return match[0]


def examples_per_round(config: ml_collections.ConfigDict) -> int:
    return config.batch_size * (config.ae_steps if config.task != "classification" else 1)


def total_rounds(config: ml_collections.ConfigDict) -> int:
    """Rounds in the whole run (the learning-rate schedule's length), from the dataset's known size."""
    from mnist_ae.data import SPECS  # noqa: PLC0415

    size = SPECS[config.dataset].train_size
    return config.epochs * (min(config.train_limit or size, size) // examples_per_round(config))
