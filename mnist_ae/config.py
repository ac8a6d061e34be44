"""Every configuration key, its default and its meaning, in one place.

Experiment files in `experiments/` start from `base_config()` and change a few values; the CLI
overrides any key with `--config.KEY=VALUE`. `validate` rejects bad values before any compute so
a typo costs a second, not an epoch.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import importlib.util
import os
import re
from pathlib import Path
from typing import Any

import ml_collections

from mnist_ae.core.choices import ACTIVATIONS, NORMS, OUTPUTS, parse_noise
from mnist_ae.errors import ConfigError
from mnist_ae.metrics import direction

MAX_GRID_DIGITS = 1000  # 1,000 digits: a 56 x 28,000-pixel strip, the most an image viewer still opens
LOG_FRAMEWORKS = ("tensorboard", "wandb", "both", "none")
# backend -> the module it needs ("auto": the exact JAX t-SNE up to 3,000 points, openTSNE above)
TSNE_BACKENDS = {"auto": "openTSNE", "exact": "jax", "opentsne": "openTSNE", "sklearn": "sklearn", "umap": "umap"}
LR_SCHEDULES = ("constant", "warmup_cosine")
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


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


def _positive_ints(name: str, values: Any) -> None:
    _check(
        len(values) > 0 and all(isinstance(v, int) and v >= 1 for v in values),
        f"{name}={values!r}: give positive integers, e.g. --config.{name}=2,3,5",
    )


def validate(config: ml_collections.ConfigDict) -> None:
    """Raise ConfigError naming the bad value and the fix; checks nothing that needs data."""
    for key in sorted(set(config.keys()) - set(FIELDS)):
        raise ConfigError(f"unknown config key {key!r}: did you mean {closest_key(key)!r}?")
    from mnist_ae.data import DATASETS, SOURCES  # noqa: PLC0415  (host module, imported lazily)

    _check(config.dataset in DATASETS,
           f"unknown dataset {config.dataset!r}: choose one of {', '.join(DATASETS)}")
    _check(config.data_source in SOURCES,
           f"data_source={config.data_source!r}: choose one of {', '.join(SOURCES)}")
    _check(config.model in ("mlp", "conv", "vae"), f"model={config.model!r}: use mlp, conv or vae")
    _check(config.init in ("torch", "flax"), f"init={config.init!r}: use torch or flax")
    _check(config.recon_loss in OUTPUTS, f"recon_loss={config.recon_loss!r}: use {' or '.join(OUTPUTS)}")
    _check(config.activation in ACTIVATIONS, f"activation={config.activation!r}: use {', '.join(ACTIVATIONS)}")
    _check(config.model != "conv" or config.activation == "relu",
           f"activation={config.activation} applies to the MLP only: the conv model is the reference's, use relu")
    _check(config.norm in NORMS, f"norm={config.norm!r}: use {' or '.join(NORMS)}")
    _check(config.model != "conv" or config.norm == "none",
           f"norm={config.norm} applies to the MLP only: the conv model is the reference's, use none")
    _check(_finite_number(config.adam_b2) and 0 <= config.adam_b2 < 1,
           f"adam_b2={config.adam_b2!r}: must be a number in [0, 1), e.g. 0.95")
    _check(config.lr_schedule in LR_SCHEDULES,
           f"lr_schedule={config.lr_schedule!r}: use {' or '.join(LR_SCHEDULES)}")
    _check(isinstance(config.lr_warmup_steps, int) and config.lr_warmup_steps >= 0,
           f"lr_warmup_steps={config.lr_warmup_steps!r}: must be an integer >= 0")
    _check(_finite_number(config.lr_end_factor) and 0 <= config.lr_end_factor <= 1,
           f"lr_end_factor={config.lr_end_factor!r}: must be a number in [0, 1]")
    _check(config.latent_dim >= 1, f"latent_dim={config.latent_dim}: the code needs at least 1 unit")
    _positive_ints("hidden", config.hidden)
    _check(all(isinstance(v, int) and v >= 1 for v in config.probe_hidden),
           f"probe_hidden={config.probe_hidden!r}: give positive integers, or () for a linear probe")
    for name in ("learning_rate", "probe_learning_rate"):
        _check(_finite_number(config[name]) and config[name] > 0,
               f"{name}={config[name]!r}: the learning rate must be a positive finite number, e.g. 1e-3")
    try:
        noise = parse_noise(config.input_noise)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _check(noise is None or config.model != "vae",
           f"input_noise={config.input_noise} trains a denoising autoencoder: use model mlp or conv (the vae's "
           "inputs are binarised digits)")
    classes = range(10)  # both datasets' (data.SPECS); checked against the labels when a pool is made
    _check(config.normal_class == -1 or config.normal_class in classes and config.task == "reconstruction",
           f"normal_class={config.normal_class!r}: give a class 0-9 to train a one-class autoencoder "
           "(--task reconstruction), or -1 for every class")
    _check(all(c in classes for c in config.normal_classes) and (not config.normal_classes or config.task == "sweep"),
           f"normal_classes={config.normal_classes!r}: give classes 0-9 for a sweep's one-class members, "
           "e.g. --config.normal_classes=0,1,2")
    _check(_finite_number(config.beta) and config.beta >= 0,
           f"beta={config.beta!r}: the KL's weight must be a finite number >= 0, e.g. 1 (the ELBO) or 4")
    _check(_finite_number(config.weight_decay) and config.weight_decay >= 0,
           f"weight_decay={config.weight_decay!r}: must be a finite number >= 0")
    _check(_seed(config.seed), f"seed={config.seed!r}: use an integer in [0, 2**32) (JAX keys take 32 bits)")
    for name in ("batch_size", "epochs", "ae_steps", "probe_steps", "eval_every_epochs",
                 "eval_batch_size", "log_every_steps", "checkpoint_every_epochs",
                 "keep_checkpoints", "grid_digits", "iw_samples"):
        _check(isinstance(config[name], int) and config[name] >= 1,
               f"{name}={config[name]!r}: must be a positive integer")
    _check(config.grid_digits <= MAX_GRID_DIGITS, f"grid_digits={config.grid_digits}: at most {MAX_GRID_DIGITS} "
           "(a wider grid is an image no viewer opens; the report and TensorBoard show 10)")
    _check(isinstance(config.augment_shift, int) and 0 <= config.augment_shift <= 7,
           f"augment_shift={config.augment_shift!r}: give a whole number of pixels in [0, 7], e.g. 1")
    for name in ("train_limit", "test_limit", "num_devices", "member_devices", "analysis_subsample", "report_codes",
                 "histogram_every_epochs", "projector_every_evals", "kl_warmup_steps", "iw_samples_final"):
        zero = re.search(r"\(0 = ([^;)]+)", FIELDS[name].meaning).group(1)  # what 0 means, from the help text
        _check(isinstance(config[name], int) and config[name] >= 0,
               f"{name}={config[name]!r}: must be an integer >= 0 (0 = {zero})")
    _check(isinstance(config.projector_points, int) and config.projector_points >= 1,
           f"projector_points={config.projector_points!r}: must be a positive integer")
    _check(str(config.analyze_checkpoint) in ("latest", "best") or str(config.analyze_checkpoint).isdigit(),
           f"analyze_checkpoint={config.analyze_checkpoint!r}: use latest, best or an epoch number, e.g. 3")
    _check(isinstance(config.best_checkpoint_metric, str)
           and (config.best_checkpoint_metric == "" or config.best_checkpoint_metric.startswith("test/")
                and direction(config.best_checkpoint_metric) is not None),
           f"best_checkpoint_metric={config.best_checkpoint_metric!r}: name a test score (an error, loss or "
           "accuracy), e.g. test/recon_mse, or '' for none")
    _check(config.tsne_backend in TSNE_BACKENDS,
           f"tsne_backend={config.tsne_backend!r}: use one of {', '.join(TSNE_BACKENDS)}")
    module = TSNE_BACKENDS[config.tsne_backend]
    _check(importlib.util.find_spec(module) is not None,
           f"tsne_backend={config.tsne_backend} needs the {module} package: pip install -e '.[tsne]'")
    if config.task in ("reconstruction", "sweep") and config.analyze_at_end:
        check_analysis_points(config, "or set --config.analyze_at_end=False")
    if config.task == "sweep":
        _positive_ints("latent_dims", config.latent_dims)
        _check(len(config.seeds) > 0 and all(_seed(s) for s in config.seeds),
               f"seeds={config.seeds!r}: give integers in [0, 2**32), e.g. --config.seeds=0,1,2")
        _check(len(config.learning_rates) > 0
               and all(_finite_number(lr) and lr > 0 for lr in config.learning_rates),
               f"learning_rates={config.learning_rates!r}: give one or more positive finite rates, e.g. 1e-3,3e-3")
        _check(len(config.betas) > 0 and all(_finite_number(b) and b >= 0 for b in config.betas),
               f"betas={config.betas!r}: give one or more KL weights >= 0, e.g. --config.betas=1,4")
        _check(config.model == "vae" or tuple(config.betas) == (1.0,),
               f"betas={config.betas!r} weigh a vae's KL: set --config.model=vae or leave betas out")
        for name in ("latent_dims", "seeds", "learning_rates", "betas", "normal_classes"):
            values = list(config[name])
            repeated = sorted({v for v in values if values.count(v) > 1})
            _check(not repeated, f"{name} repeats {repeated[0]!r}: each member must differ, list each value once"
                   if repeated else "")
        _check(config.model != "conv" or tuple(config.latent_dims) == (256,),
               "a conv sweep has the fixed 256-unit code: set --config.latent_dims=256 and sweep "
               "seeds and learning_rates")


def check_analysis_points(config: ml_collections.ConfigDict, alternative: str = "") -> None:
    """The analysis needs MIN_ANALYSIS_POINTS test codes; `--task analyze` checks its run's config."""
    from mnist_ae.data import SPECS  # noqa: PLC0415

    test_size = SPECS[config.dataset].test_size
    analysed = min(config.test_limit or test_size, config.analysis_subsample or test_size)
    _check(analysed >= MIN_ANALYSIS_POINTS,
           f"the analysis would see {analysed} test codes (test_limit={config.test_limit}, analysis_subsample="
           f"{config.analysis_subsample}); it needs >= {MIN_ANALYSIS_POINTS}: raise them {alternative}".rstrip())


def check_batch_fits(config: ml_collections.ConfigDict, num_train: int) -> None:
    """The one check that needs the data size: at least one round per epoch."""
    per_round = examples_per_round(config)
    _check(per_round <= num_train,
           f"batch_size={config.batch_size} x ae_steps needs {per_round} examples per round but the "
           f"training set has {num_train}: lower --config.batch_size")
    rounds = config.epochs * (num_train // per_round)
    _check(config.lr_schedule == "constant" or config.lr_warmup_steps < rounds,
           f"lr_warmup_steps={config.lr_warmup_steps} is not shorter than the run's {rounds} rounds: "
           "lower --config.lr_warmup_steps or raise --config.epochs")


def examples_per_round(config: ml_collections.ConfigDict) -> int:
    return config.batch_size * (config.ae_steps if config.task != "classification" else 1)


def total_rounds(config: ml_collections.ConfigDict) -> int:
    """Rounds in the whole run (the learning-rate schedule's length), from the dataset's known size."""
    from mnist_ae.data import SPECS  # noqa: PLC0415

    size = SPECS[config.dataset].train_size
    return config.epochs * (min(config.train_limit or size, size) // examples_per_round(config))


def check_workdir(workdir: str | Path) -> Path:
    """Create the workdir or fail with one line before any compute."""
    path = Path(workdir).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create workdir {path}: {e.strerror}; pass a writable --workdir") from None
    _check(os.access(path, os.W_OK), f"workdir {path} is not writable: pass a writable --workdir")
    return path
