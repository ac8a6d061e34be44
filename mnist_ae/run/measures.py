"""What autoencoders are for, measured at the end of a run (and a VAE's samples at each eval): retrieval by
label, denoising of noisy test digits, one-class anomaly detection, a VAE's importance-weighted bound; each
beside its classic baseline. Hooks like `run.hooks`' (which chooses them from the config), kept apart
because each computes its own numbers rather than logging the run's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mnist_ae import parallel, render
from mnist_ae.analysis import baselines
from mnist_ae.core import noise
from mnist_ae.core.losses import to_unit_range
from mnist_ae.core.models import code_dim
from mnist_ae.core.state import TrainState
from mnist_ae.run.device_data import host_digits
from mnist_ae.run.driver import Hook, Run
from mnist_ae.workdir import RunDir

ANOMALY_PHASE = "anomaly detection (one-class AUROC; PCA beside)"
DENOISING_PHASE = "denoising (noisy test digits; PCA and the noisy digits beside)"
RETRIEVAL_PHASE = "retrieval (precision@10, mAP; pixels and PCA beside)"
SAMPLES_SEED = 0  # a VAE's prior draws, the same at every eval: its sample grid changes only as its decoder does


def code_widths(run: Run) -> list[int]:
    """Each member's code width: its swept latent size, else the run's own; the size each baseline matches."""
    own = code_dim(run.config.model, run.config.latent_dim)
    return [tags.get("latent_dim") or own for tags in run.program.members]


def _samples(run: Run, state: TrainState) -> None:
    """A VAE's digits generated from the prior: 8 rows of 8, or 10 per sweep member (its own units drawn,
    the rest masked); TensorBoard/W&B images and WORKDIR/samples/samples_step_N.png per eval."""
    from mnist_ae.analysis.digit_figures import digit_rows  # noqa: PLC0415  (matplotlib only when needed)

    width = run.program.learner.autoencoder.latent_dim
    z_nl = np.random.default_rng(SAMPLES_SEED).standard_normal((64, width)).astype(np.float32)
    rows = []
    for i, tags in enumerate(run.program.members):
        own = np.arange(width) < tags.get("latent_dim", width)
        images = run.program.decode(state, z_nl * own, member=i)
        rows += [(tags["member"], images[:10])] if run.program.stacked else [("", images[r::8]) for r in range(8)]
    if parallel.is_main_process():
        step = run.program.step(state)
        path = digit_rows(rows, RunDir(run.workdir).samples_png(step), f"samples from the prior at step {step:,}")
        run.writers[0].write_images(step, {"views/samples": render.read_png(path)})


def _final_bound(run: Run, state: TrainState) -> list[dict[str, float]]:
    """The VAE's test -log p(x) bound with iw_samples_final importance samples per digit (Burda et al.'s
    5,000), per member: a scalar at the last step and a final number."""
    k = run.config.iw_samples_final
    bounds = run.program.bound(state, run.data, k)
    for writer, nll in zip(run.writers, bounds):
        writer.write_scalars(run.program.step(state), {f"test/nll_iw{k}": nll})
    return [{f"test/nll_iw{k}": nll} for nll in bounds]


def _retrieval(run: Run, state: TrainState) -> list[dict[str, float]]:
    """Each member's retrieval numbers (test codes querying the training codes by label) beside raw pixels'
    and PCA's at its code size: final numbers and scalars at the last step."""
    from mnist_ae.analysis.retrieval import baseline_numbers, retrieval_numbers  # noqa: PLC0415

    train_codes, test_codes = run.program.train_codes(state, run.data), run.test_codes(state)
    if not run.program.stacked:
        train_codes, test_codes = train_codes[None], test_codes[None]
    digits = host_digits(run.config)
    numbers = []
    for i, width in enumerate(code_widths(run)):
        mine = {f"test/{k}": v for k, v in retrieval_numbers(train_codes[i][:, :width], digits.train_y,
                                                              test_codes[i][:, :width], digits.test_y).items()}
        mine.update(baseline_numbers(*digits, width))
        run.writers[i].write_scalars(run.program.step(state), mine)
        numbers.append(mine)
    return numbers


def _denoising(run: Run, state: TrainState) -> list[dict[str, float]]:
    """Each member's reconstructions of test digits corrupted at noise.EVAL_LEVELS (gaussian, and the run's
    own kind), as PSNR and MSE on [0, 1] against the clean digits, beside PCA's at its code size and the noisy
    digits themselves; and RUN/denoising.png: noisy, denoised and clean rows at the run's own noise (else
    gaussian 0.5)."""
    from mnist_ae.analysis.digit_figures import digit_rows  # noqa: PLC0415  (matplotlib only when needed)

    learner, widths = run.program.learner, code_widths(run)
    mean_p, axes_pk = baselines.pca_axes(host_digits(run.config).train_x, max(widths))
    own = learner.input_noise or ("gaussian", 0.5)
    numbers: list[dict[str, float]] = [{} for _ in widths]
    for kind in dict.fromkeys(["gaussian", own[0]]):
        results = run.program.denoising(state, run.data, kind, noise.EVAL_LEVELS, [(mean_p, axes_pk[:, :w]) for w in widths])
        for mine, by_level in zip(numbers, results):
            for level, m in by_level.items():
                tag = f"{kind}{level:g}"
                for measure in ("psnr", "mse01"):
                    mine.update({f"test/denoise_{tag}_{measure}": m[f"model_{measure}"],
                                 f"baseline/pca_denoise_{tag}_{measure}": m[f"pca_{measure}"],
                                 f"baseline/noisy_{tag}_{measure}": m[f"noisy_{measure}"]})
    for writer, mine in zip(run.writers, numbers):
        writer.write_scalars(run.program.step(state), mine)
    clean = to_unit_range(jnp.asarray(run.data.grid_x))
    key = jax.random.PRNGKey(noise.EVAL_SEED)
    noisy = jax.vmap(lambda i, x: noise.corrupt(jax.random.fold_in(key, i), x, *own))(jnp.arange(len(clean)), clean)
    rows = [(f"{own[0]} {own[1]:g}", np.asarray(noisy))]
    for i, tags in enumerate(run.program.members):
        mask = run.program.extra_args[0][i] if run.program.stacked else None
        denoised, _ = learner.autoencoder.apply(run.program.member(state.params["ae"], i), noisy, mask)
        rows.append((tags.get("member", "denoised"), np.asarray(denoised)))
    if parallel.is_main_process():
        path = digit_rows([*rows, ("clean", np.asarray(clean))], RunDir(run.workdir).denoising,
                          "test digits: noisy, denoised, clean")
        run.writers[0].write_images(run.program.step(state), {"views/denoising": render.read_png(path)})
    return numbers


def _anomaly(run: Run, state: TrainState) -> list[dict[str, float]]:
    """Each one-class member's AUROC at telling the other classes' test digits from its own by reconstruction
    error, beside PCA's fitted on the same class at its code size; the mean over the members in the log (and
    an untagged sweep record); ROC curves and each class's most and least anomalous digits as pictures."""
    from mnist_ae.analysis import anomaly  # noqa: PLC0415  (matplotlib only when needed)
    from mnist_ae.writers import JsonlWriter  # noqa: PLC0415

    config = run.config
    train_x, train_y, test_x, test_y = host_digits(config)
    errors = run.program.test_errors(state, run.data)
    errors = errors if run.program.stacked else errors[None]
    numbers, curves, rows = [], [], []
    for i, (tags, width) in enumerate(zip(run.program.members, code_widths(run))):
        normal = int(tags.get("normal_class", config.normal_class))
        anomalous = test_y != normal
        pca = anomaly.pca_scores(train_x[train_y == normal], test_x, width)
        numbers.append({"test/auroc": anomaly.auroc(errors[i], anomalous), "baseline/pca_auroc": anomaly.auroc(pca, anomalous)})
        run.writers[i].write_scalars(run.program.step(state), numbers[-1])
        name = run.data.class_names[normal]
        curves.append((name, *anomaly.roc_curve(errors[i], anomalous), numbers[-1]["test/auroc"]))
        rows.append((name, errors[i], test_y))
    means = {f"{k}_mean": float(np.mean([n[k] for n in numbers])) for k in numbers[0]}
    run.reporter.note(f"one-class AUROC, mean over {len(numbers)} classes: {means['test/auroc_mean']:.4f} "
                      f"(PCA at the same code size {means['baseline/pca_auroc_mean']:.4f})")
    if parallel.is_main_process():
        if run.program.stacked:  # the sweep's own record: the mean is no member's number
            summary = JsonlWriter(RunDir(run.workdir).metrics)
            summary.write_scalars(run.program.step(state), means)
            summary.close()
        run_dir = RunDir(run.workdir)
        figures = {"roc": anomaly.roc_figure(curves, run_dir.anomaly_roc),
                   "digits": anomaly.extremes_figure(rows, test_x, run_dir.anomaly_digits)}
        run.writers[0].write_images(run.program.step(state), {f"views/anomaly/{k}": render.read_png(p)
                                                             for k, p in figures.items()})
    return numbers


def anomaly_hooks(config: ml_collections.ConfigDict) -> list[Hook]:
    one_class = config.normal_classes if config.task == "sweep" else config.normal_class >= 0
    return [Hook(ANOMALY_PHASE, _anomaly, at_end=True, shown=True)] if one_class else []


def denoising_hooks(config: ml_collections.ConfigDict) -> list[Hook]:
    wanted = config.input_noise or config.evaluate_denoising
    return [Hook(DENOISING_PHASE, _denoising, at_end=True, shown=True)] if wanted else []


def vae_hooks(config: ml_collections.ConfigDict) -> list[Hook]:
    """A VAE's samples at every eval (the end's bound is among the end stages)."""
    every = config.eval_every_epochs
    return [Hook("samples", _samples, every=every, at_start=True, at_last=True)] if config.model == "vae" else []


def bound_hooks(config: ml_collections.ConfigDict) -> list[Hook]:
    if config.model != "vae" or not config.iw_samples_final:
        return []
    return [Hook(f"bound with {config.iw_samples_final} importance samples", _final_bound, at_end=True, shown=True)]


def retrieval_hook() -> Hook:
    return Hook(RETRIEVAL_PHASE, _retrieval, at_end=True, shown=True)
