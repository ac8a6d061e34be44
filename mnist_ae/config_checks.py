"""Every check of a config's values, before any compute: one line naming the bad value and the fix.

`validate` needs nothing but the config (a second and more before JAX loads); `check_batch_fits`
needs the data's size, `check_analysis_points` the dataset's test size, `check_workdir` the disk.
The keys, their defaults and meanings are `config.FIELDS`.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from pathlib import Path
from typing import Any

import ml_collections

from mnist_ae.config import FIELDS, MIN_ANALYSIS_POINTS, TSNE_BACKENDS, closest_key, examples_per_round
from mnist_ae.core.choices import ACTIVATIONS, NORMS, OUTPUTS, parse_noise
from mnist_ae.errors import ConfigError
from mnist_ae.metrics import direction

MAX_GRID_DIGITS = 1000  # 1,000 digits: a 56 x 28,000-pixel strip, the most an image viewer still opens
LR_SCHEDULES = ("constant", "warmup_cosine")


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
                 "keep_checkpoints", "grid_digits", "iw_samples", "train_iw_samples"):
        _check(isinstance(config[name], int) and config[name] >= 1,
               f"{name}={config[name]!r}: must be a positive integer")
    _check(config.train_iw_samples == 1 or config.model == "vae" and config.beta == 1 and not config.kl_warmup_steps
           and tuple(config.betas) == (1.0,),
           f"train_iw_samples={config.train_iw_samples!r} trains an IWAE: it needs --config.model=vae with beta 1 and "
           "no kl_warmup_steps (the k-sample bound has no KL term to weigh)")
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


def check_workdir(workdir: str | Path) -> Path:
    """Create the workdir or fail with one line before any compute."""
    path = Path(workdir).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create workdir {path}: {e.strerror}; pass a writable --workdir") from None
    _check(os.access(path, os.W_OK), f"workdir {path} is not writable: pass a writable --workdir")
    return path
