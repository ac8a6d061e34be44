"""What a run logs besides its train and test scalars, and when: one `Hook` each.

A hook reads the run's cached eval and test codes, so several hooks at one step share a single
device call. Which hooks a program gets is decided here, from the config, once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mnist_ae import build, parallel, render
from mnist_ae.core.losses import sse01_from_mse
from mnist_ae.core.models import NUM_PIXELS
from mnist_ae.core.state import TrainState
from mnist_ae.analysis import ANALYSIS_PHASE, baselines
from mnist_ae.run import measures, monitoring, sweep_outputs
from mnist_ae.run.device_data import host_digits
from mnist_ae.run.driver import Hook, Run, eval_hook
from mnist_ae.workdir import RunDir, read_records

MEMBERS_PHASE = "analysis of every member (quality numbers, 2-D maps)"


def _system(run: Run, state: TrainState) -> None:
    monitoring.log_system(run.writers[0], run.program.step(state))


def _model_summary(run: Run, state: TrainState) -> None:
    monitoring.log_model_summary(run.writers[0], state.params)


def _graph(run: Run, state: TrainState) -> None:
    """The training round as a graph for TensorBoard's Graphs tab (every member's writer: a sweep's is the
    vmapped round). A picture must never stop a run: a graph that cannot be built is one warning line."""
    from mnist_ae.writers.graph import graph_def  # noqa: PLC0415  (tensorboardX protos only when needed)

    if not parallel.is_main_process():
        return
    try:
        graph = graph_def(*run.program.round_jaxpr(state, run.data))
    except Exception as e:  # noqa: BLE001
        run.reporter.warn(f"no graph for TensorBoard's Graphs tab ({type(e).__name__}: {e}); training goes on")
        return
    for writer in run.writers:
        writer.write_graph(graph)


def _confusion(run: Run, state: TrainState) -> None:
    name = "test/probe_confusion" if run.program.learner.is_autoencoder else "test/confusion"
    run.writers[0].write_confusion(run.program.step(state), name, run.metrics(state)[0][name],
                                   run.data.class_names)


def _figures(run: Run, state: TrainState) -> None:
    """WORKDIR/curves.png (train and test curves, unsmoothed, from metrics.jsonl: the whole run across
    resumes) and WORKDIR/confusion.png (the last test confusion matrix, numbers readable)."""
    from mnist_ae.analysis.figures import training_curves  # noqa: PLC0415  (matplotlib only when needed)

    if not parallel.is_main_process():
        return
    name = "test/probe_confusion" if run.program.learner.is_autoencoder else "test/confusion"
    counts = np.asarray(run.metrics(state)[0][name])
    render.save_png(render.confusion_image(counts, run.data.class_names, f"{name} at step {run.program.step(state):,}"),
                    RunDir(run.workdir).confusion)
    run.writers[0].flush()  # every record of this run in metrics.jsonl before it is read back
    records = [r for r in read_records(RunDir(run.workdir).metrics) if "step" in r]
    training_curves(records, RunDir(run.workdir).curves, title=f"{run.workdir.name}: train and test (unsmoothed)")


def _reconstructions(run: Run, state: TrainState) -> None:
    """The grid from noise to sharp digits, titled with its step and test MSE: TensorBoard/W&B images
    and a PNG per eval."""
    recon = run.program.reconstructions(state, jnp.asarray(run.data.grid_x))
    if parallel.is_main_process():  # the PNG is written directly, not through the writer
        step, mse = run.program.step(state), float(run.metrics(state)[0]["test/recon_mse"])
        grid = render.labelled_reconstruction_grid(
            run.data.grid_x, recon, f"step {step:,}  (epoch {run.program.epoch(state)})   test MSE {mse:.4f}")
        monitoring.log_reconstructions(run.writers[0], step, grid, run.workdir)


def _latent_codes(run: Run, state: TrainState) -> None:
    """The first `report_codes` test codes at each eval, for the report's map of the latent space forming."""
    from mnist_ae.report.collect import save_codes  # noqa: PLC0415

    n = min(run.config.report_codes, run.data.test_x.shape[0])
    codes = run.test_codes(state)[..., :n, :]
    if parallel.is_main_process():
        names = [tags["member"] for tags in run.program.members] if run.program.stacked else None
        save_codes(run.workdir, run.program.step(state), codes, np.asarray(run.data.test_y[:n]), names)


def _report(run: Run, state: TrainState) -> None:
    """RUN/report.html, after every other output of the run is written."""
    from mnist_ae.report.task import end_of_run  # noqa: PLC0415  (plotly loads only here)

    for writer in run.writers:
        writer.flush()
    if jax.process_count() > 1:
        # Process 0 alone would join collectives (encodes, orbax's barriers) that the others never reach.
        run.reporter.note(f"report: python launch.py --task report --workdir {run.workdir}")
    elif parallel.is_main_process():
        end_of_run(run, state)


def _histograms(run: Run, state: TrainState) -> None:
    codes = run.test_codes(state) if run.program.learner.is_autoencoder else None
    monitoring.log_histograms(run.writers[0], run.program.step(state), codes, state.params)


def _projector(run: Run, state: TrainState) -> None:
    points = min(run.config.projector_points, run.data.test_x.shape[0])
    codes = run.test_codes(state)[:points]
    preds = np.asarray(jnp.argmax(run.program.learner.head.apply(state.params["probe"], codes), -1))
    monitoring.log_projector(run.writers[0], run.program.step(state), codes, np.asarray(run.data.test_y[:points]),
                             preds, np.asarray(run.data.test_x[:points]), run.data.class_names)


def _latent_pictures(run: Run, state: TrainState) -> None:
    """Class means, interpolations and (2-unit codes) the manifold, decoded; one row per sweep member."""
    from mnist_ae.analysis.latent_pictures import latent_pictures  # noqa: PLC0415

    codes = run.test_codes(state)
    codes = codes[None] if not run.program.stacked else codes
    models = []
    for i, tags in enumerate(run.program.members):
        width = tags.get("latent_dim", codes.shape[-1])  # a sweep member's own units; the rest are masked zeros

        def decode(z_nl: np.ndarray, i: int = i) -> np.ndarray:
            padded = np.pad(z_nl, [(0, 0), (0, codes.shape[-1] - z_nl.shape[1])])
            return run.program.decode(state, padded, member=i)

        models.append((tags.get("member", ""), codes[i][:, :width], decode))
    if parallel.is_main_process():
        labels = np.asarray(run.data.test_y)
        figures = latent_pictures(models, labels, run.data.class_names, np.arange(len(labels)),
                                  RunDir(run.workdir).latent)
        run.writers[0].write_images(run.program.step(state), {f"views/latent/{k}": render.read_png(p)
                                                             for k, p in figures.items()})


def _pca_baseline(run: Run, state: TrainState) -> list[dict[str, float]]:
    """PCA's test MSE at each member's code size, beside its own (for the summary, HParams, table)."""
    del state
    digits = host_digits(run.config)
    numbers = []
    for width in measures.code_widths(run):
        mse = baselines.pca_test_mse(digits.train_x, digits.test_x, width)
        numbers.append({baselines.PCA_KEY: mse, baselines.PCA_SSE01_KEY: sse01_from_mse(mse, NUM_PIXELS)})
    return numbers


def _hparams(run: Run, state: TrainState) -> None:
    del state
    run.writers[0].write_hparams(run.config.to_dict(), run.finals[0])


def _analysis(run: Run, state: TrainState) -> list[dict[str, float]] | None:
    from mnist_ae.analysis.task import analyze_codes  # noqa: PLC0415  (scikit-learn loads only when needed)

    codes, metrics = run.test_codes(state), run.metrics(state)[0]  # every process: collectives on a global mesh
    if not parallel.is_main_process():
        return None
    result = analyze_codes(run.config, codes, metrics, run.data.test_y,
                           run.data.test_x, run.data.class_names, run.workdir, run.writers[0],
                           run.program.step(state), say=run.reporter.note)
    return [result.summary()]


def single_hooks(config: ml_collections.ConfigDict, is_autoencoder: bool) -> list[Hook]:
    """A reconstruction or classification run, in the order they fire at each epoch."""
    evals = config.eval_every_epochs
    hooks = [Hook("model summary", _model_summary, at_start=True),
             Hook("graph", _graph, at_start=True),
             Hook("system", _system, every=1),
             eval_hook(evals),
             Hook("confusion", _confusion, every=evals, at_start=True, at_last=True)]
    if is_autoencoder:
        hooks += [Hook("reconstructions", _reconstructions, every=evals, at_start=True, at_last=True),
                  *measures.vae_hooks(config), *_codes_hooks(config),
                  Hook("projector", _projector, every=evals * config.projector_every_evals, at_end=True)]
    hooks.append(Hook("histograms", _histograms, every=config.histogram_every_epochs,
                      at_start=config.histogram_every_epochs > 0))
    if is_autoencoder and config.latent_pictures:
        hooks.append(Hook("latent pictures", _latent_pictures, at_end=True))
    hooks.append(Hook("figures", _figures, at_end=True))
    if is_autoencoder:
        hooks += [Hook("pca baseline", _pca_baseline, at_end=True), *measures.bound_hooks(config), *measures.anomaly_hooks(config),
                  *measures.denoising_hooks(config)]
    if is_autoencoder and config.analyze_at_end:
        hooks += [measures.retrieval_hook(),
                  Hook(ANALYSIS_PHASE, _analysis, at_end=True, shown=True)]  # before hparams: its numbers are HParams metrics
    hooks.append(Hook("hparams", _hparams, at_end=True))
    if is_autoencoder and config.report_at_end:
        hooks.append(Hook("report", _report, at_end=True))
    return hooks


def _codes_hooks(config: ml_collections.ConfigDict) -> list[Hook]:
    every = config.eval_every_epochs
    return [Hook("latent codes", _latent_codes, every=every, at_start=True, at_last=True)] if config.report_codes else []


def sweep_hooks(config: ml_collections.ConfigDict) -> list[Hook]:
    """A sweep: test scalars per member; at the end its hparams, exports, comparison and table."""
    members = build.members(config)

    def hparams(run: Run, state: TrainState) -> None:
        del state
        for writer, member, final in zip(run.writers, members, run.finals):
            writer.write_hparams({**build.member_config(config, member).to_dict(), **member.tags}, final)

    def member_analysis(run: Run, state: TrainState) -> list[dict[str, float]] | None:
        """Each member's quality numbers (kNN, linear probe, silhouette, trustworthiness: for the results
        table, the HParams and the summary) and its 2-D map into one figure."""
        from mnist_ae.analysis.members import analyze_members  # noqa: PLC0415  (scikit-learn only when needed)

        codes = run.test_codes(state)  # every process: a collective on a global mesh
        if not parallel.is_main_process():
            return None
        numbers = analyze_members(codes, np.asarray(run.data.test_y), [m.latent_dim for m in members],
                                  [m.name for m in members], run.data.class_names, RunDir(run.workdir).analysis(),
                                  tsne_backend=config.tsne_backend, seed=config.seed)
        return [{f"analysis/{k}": float(v) for k, v in member_numbers.items()} for member_numbers in numbers]

    def outputs(run: Run, state: TrainState) -> None:
        for member, (single, member_state) in zip(members, run.member_runs(state)):
            sweep_outputs.export_member(single, member_state, RunDir(run.workdir).member(member.name).root)
        recon = run.program.reconstructions(state, jnp.asarray(run.data.grid_x))
        if parallel.is_main_process():  # files written directly, not through the writers
            sweep_outputs.comparison_figure(run.data.grid_x, recon, members, RunDir(run.workdir).comparison)
            sweep_outputs.results_table(members, run.finals, run.workdir)

    hooks = [Hook("graph", _graph, at_start=True), eval_hook(config.eval_every_epochs), *measures.vae_hooks(config),
             *_codes_hooks(config), Hook("pca baseline", _pca_baseline, at_end=True), *measures.bound_hooks(config),
             *measures.anomaly_hooks(config), *measures.denoising_hooks(config)]
    if config.analyze_at_end:  # before hparams and the table: they show its numbers
        hooks += [measures.retrieval_hook(),
                  Hook(MEMBERS_PHASE, member_analysis, at_end=True, shown=True)]
    hooks += [Hook("hparams", hparams, at_end=True), Hook("sweep outputs", outputs, at_end=True)]
    if config.latent_pictures:
        hooks.append(Hook("latent pictures", _latent_pictures, at_end=True))
    if config.report_at_end:
        hooks.append(Hook("report", _report, at_end=True))
    return hooks
