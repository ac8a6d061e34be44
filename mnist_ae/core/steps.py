"""The train round (autoencoder and probe in alternation) and the whole-test-set evaluation.

Pure functions of (learner, state, arrays): jittable, vmappable, no I/O. A `Learner` holds only static
things (modules, optimizers, the AE:probe schedule) and is closed over, never traced.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from mnist_ae.core import losses, noise, vae
from mnist_ae.core.models import Autoencoder, MLP
from mnist_ae.core.state import Params, TrainState, learning_rate, new_state

Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Learner:
    """What is trained, as static Python objects (closed over, never traced).

    With an autoencoder: parts "ae" and "probe" (`head` is the probe on the code). Without one:
    the part "classifier" (`head` is the supervised classifier on pixels). `augment_shift`: each
    training digit moves by up to this many pixels, fresh each round (`core.augment`). A `vae.VAE`
    autoencoder trains on the ELBO with the KL weighed by `beta` (a sweep passes each member's), ramped up
    from 0 over `kl_warmup_steps` rounds, or with `train_iw_samples` > 1 on the IWAE's k-sample bound; each
    eval adds its bounds, with `iw_samples` importance samples.
    `input_noise` (kind, level): a denoising autoencoder's corruption of its inputs (`core.noise`), fresh
    each round, the clean digits its targets.
    """

    autoencoder: Autoencoder | vae.VAE | None
    head: MLP
    optimizers: dict[str, optax.GradientTransformation]
    ae_steps: int = 1
    probe_steps: int = 1
    eval_batch_size: int = 1000
    augment_shift: int = 0
    beta: float = 1.0
    kl_warmup_steps: int = 0
    iw_samples: int = 0
    train_iw_samples: int = 1
    input_noise: tuple[str, float] | None = None

    @property
    def is_autoencoder(self) -> bool:
        return self.autoencoder is not None

    @property
    def is_vae(self) -> bool:
        return isinstance(self.autoencoder, vae.VAE)

    @property
    def batches_per_round(self) -> int:
        return self.ae_steps if self.is_autoencoder else 1


def init_params(learner: Learner, key: jax.Array) -> dict[str, Params]:
    x_bhw = jnp.zeros((1, 28, 28), jnp.float32)
    k_ae, k_clf = jax.random.split(key)
    if not learner.is_autoencoder:
        return {"classifier": learner.head.init(k_clf, x_bhw)}
    ae_params = learner.autoencoder.init(k_ae, x_bhw)
    z_bl = learner.autoencoder.apply(ae_params, x_bhw, method="encode")
    return {"ae": ae_params, "probe": learner.head.init(k_clf, z_bl)}


def init_state(learner: Learner, seed: int | jax.Array) -> TrainState:
    """Parameters from the seed's first key, the data order from its second. A traced uint32 seed gives
    the same bits as the Python int, and one program for every seed."""
    k_params, k_data = jax.random.split(jax.random.PRNGKey(seed))
    return new_state(init_params(learner, k_params), learner.optimizers, k_data)


def update_part(learner: Learner, state: TrainState, part: str,
                loss_fn: Callable[[Params], tuple[jax.Array, jax.Array | Metrics]],
                aux_name: str = "accuracy") -> tuple[TrainState, Metrics]:
    """One optimizer step on `part` alone: the other parts are constants of `loss_fn`, whose
    auxiliary output is reported as `aux_name` (or under its own names, when a dict)."""
    params, opt_state = state.params[part], state.opt_states[part]
    with jax.named_scope(part):  # groups the step's operations in the TensorBoard graph (`writers.graph`)
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = learner.optimizers[part].update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    state = state.replace(params={**state.params, part: params},
                          opt_states={**state.opt_states, part: opt_state})
    return state, {"loss": loss, **(aux if isinstance(aux, dict) else {aux_name: aux}), "grad_norm": optax.tree.norm(grads)}


def _mean(metrics: list[Metrics], prefix: str) -> Metrics:
    return {f"{prefix}{k}": jnp.mean(jnp.stack([m[k] for m in metrics])) for k in metrics[0]}


def kl_weight(learner: Learner, step: jax.Array, beta: float | jax.Array | None = None) -> jax.Array | float:
    """The KL's weight in round `step`: `beta` (the learner's unless given), ramped linearly from 0 over
    `kl_warmup_steps` rounds."""
    beta = learner.beta if beta is None else beta
    if not learner.kl_warmup_steps:
        return beta
    return beta * jnp.minimum(1.0, (step + 1) / learner.kl_warmup_steps)


def train_round(learner: Learner, state: TrainState, x_gbhw: jax.Array, y_gb: jax.Array,
                mask_l: jax.Array | None = None, beta: jax.Array | None = None) -> tuple[TrainState, Metrics]:
    """`ae_steps` AE updates (probe frozen), then `probe_steps` probe updates (AE frozen).

    Probe step j trains on the codes of the round's batch j mod ae_steps, encoded by the
    just-updated AE under stop_gradient. The schedule is static and unrolled. `beta`: a VAE sweep
    member's KL weight (a single run's is the learner's).
    """
    if not learner.is_autoencoder:
        def ce_loss(p: Params) -> tuple[jax.Array, jax.Array]:
            logits = learner.head.apply(p, x_gbhw[0])
            return losses.cross_entropy(logits, y_gb[0]), losses.accuracy(logits, y_gb[0])

        state, m = update_part(learner, state, "classifier", ce_loss)
        metrics = {f"train/{k}": v for k, v in m.items()}
        metrics["train/param_norm"] = optax.tree.norm(state.params["classifier"])
        metrics["train/learning_rate"] = learning_rate(state.opt_states["classifier"])
        return state.replace(step=state.step + 1), metrics

    ae = learner.autoencoder
    ae_metrics = []
    if learner.is_vae:
        beta_now, round_key = kl_weight(learner, state.step, beta), vae.round_key(state.rng, state.step)
    if learner.input_noise:
        noise_key = noise.round_key(state.rng, state.step)
    for j, x_bhw in enumerate(x_gbhw):
        def recon_loss(p: Params, x_bhw: jax.Array = x_bhw, j: int = j) -> tuple[jax.Array, jax.Array | Metrics]:
            if learner.is_vae:  # the round's j-th batch binarised and sampled from its own key
                return vae.training_loss(ae, p, jax.random.fold_in(round_key, j), x_bhw, beta_now, mask_l,
                                         k=learner.train_iw_samples)
            inputs_bhw = x_bhw if not learner.input_noise else noise.corrupt(
                jax.random.fold_in(noise_key, j), x_bhw, *learner.input_noise)  # the clean batch stays the target
            logits_bhw, _ = ae.apply(p, inputs_bhw, mask_l, method="logits")
            return losses.recon_loss(logits_bhw, x_bhw, ae.output)

        state, m = update_part(learner, state, "ae", recon_loss, aux_name="recon_mse")
        ae_metrics.append(m)
    codes_gbl = [ae.apply(state.params["ae"], x, mask_l, method="encode") for x in x_gbhw]
    with jax.named_scope("codes"):  # the probe's inputs: a box of its own in the TensorBoard graph
        codes_gbl = [jax.lax.stop_gradient(z_bl) for z_bl in codes_gbl]
    probe_metrics = []
    for j in range(learner.probe_steps):
        z_bl, y_b = codes_gbl[j % len(codes_gbl)], y_gb[j % len(codes_gbl)]

        def probe_loss(p: Params, z_bl: jax.Array = z_bl, y_b: jax.Array = y_b):
            logits = learner.head.apply(p, z_bl)
            return losses.cross_entropy(logits, y_b), losses.accuracy(logits, y_b)

        state, m = update_part(learner, state, "probe", probe_loss)
        probe_metrics.append(m)
    ae_m = _mean(ae_metrics, "train/ae_")
    bce = {"train/recon_bce": ae_m["train/ae_loss"]} if ae.output == "sigmoid" and not learner.is_vae else {}
    if learner.is_vae:
        bce = {"train/elbo": ae_m["train/ae_elbo"], "train/kl": ae_m["train/ae_kl"], "train/beta": jnp.asarray(beta_now)}
        if learner.train_iw_samples > 1:
            bce[f"train/elbo_iw{learner.train_iw_samples}"] = ae_m["train/ae_elbo_iw"]
    metrics = {
        "train/recon_mse": ae_m["train/ae_recon_mse"],
        **bce,
        "train/ae_grad_norm": ae_m["train/ae_grad_norm"],
        **_mean(probe_metrics, "train/probe_"),
        "train/ae_param_norm": optax.tree.norm(state.params["ae"]),
        "train/probe_param_norm": optax.tree.norm(state.params["probe"]),
        "train/learning_rate": learning_rate(state.opt_states["ae"]),
    }
    return state.replace(step=state.step + 1), metrics


def _chunked(x_n: jax.Array, chunk: int) -> jax.Array:
    """Pad the leading axis to a multiple of `chunk` and fold it: [n, ...] -> [c, chunk, ...]."""
    n = x_n.shape[0]
    padded = math.ceil(n / chunk) * chunk
    x_n = jnp.pad(x_n, [(0, padded - n)] + [(0, 0)] * (x_n.ndim - 1))
    return x_n.reshape(padded // chunk, chunk, *x_n.shape[1:])


def evaluate(learner: Learner, params: dict[str, Params], images_nhw: jax.Array, labels_n: jax.Array,
             mask_l: jax.Array | None = None) -> Metrics:
    """Whole-set metrics in one call: chunks under lax.map, sums, then means over real rows. A VAE's bounds
    are of the test set's one fixed binarisation (`vae.eval_draws`)."""
    n = images_nhw.shape[0]
    chunk = min(learner.eval_batch_size, n)
    weights_n = jnp.ones((n,), jnp.float32)
    draws = vae.eval_draws(images_nhw) if learner.is_vae else ()

    def one_chunk(args: tuple[jax.Array, ...]) -> Metrics:
        x_u8, y_b, w_b, *draws_b = args
        x_bhw = losses.to_unit_range(x_u8)
        if not learner.is_autoencoder:
            logits = learner.head.apply(params["classifier"], x_bhw)
            sq_b = jnp.zeros_like(w_b)
        else:
            recon_bhw, z_bl = learner.autoencoder.apply(params["ae"], x_bhw, mask_l)
            sq_b = losses.per_example_mse(recon_bhw, x_bhw)
            logits = learner.head.apply(params["probe"], z_bl)
        ce_b = optax.softmax_cross_entropy_with_integer_labels(logits, y_b)
        vae_sums = ({"vae": vae.eval_sums(learner.autoencoder, params["ae"], *draws_b, w_b, learner.iw_samples, mask_l)}
                    if learner.is_vae else {})
        return {"sq": jnp.sum(sq_b * w_b), "ce": jnp.sum(ce_b * w_b), **vae_sums,
                "confusion": losses.confusion_counts(y_b, jnp.argmax(logits, -1), w_b, logits.shape[-1])}

    parts = jax.lax.map(one_chunk, tuple(_chunked(a, chunk) for a in (
        images_nhw, labels_n.astype(jnp.int32), weights_n, *draws)))
    sums = jax.tree.map(lambda a: a.sum(0), parts)
    confusion = sums["confusion"]
    prefix = "test/" if not learner.is_autoencoder else "test/probe_"
    metrics = {
        f"{prefix}loss": sums["ce"] / n,
        f"{prefix}accuracy": jnp.trace(confusion) / n,
        f"{prefix}per_class_accuracy": losses.per_class_accuracy(confusion),
        f"{prefix}confusion": confusion,
    }
    if learner.is_autoencoder:
        mse = sums["sq"] / n  # per pixel, pixels in [-1, 1]
        metrics["test/recon_mse"] = mse
        metrics["test/recon_mse01"] = losses.sse01_from_mse(mse, num_pixels=1)  # per pixel on [0, 1]
        metrics["test/recon_sse01"] = losses.sse01_from_mse(mse, math.prod(images_nhw.shape[1:]))  # the 2006 paper's
    if learner.is_vae:
        metrics.update(vae.eval_metrics(sums["vae"], n, learner.iw_samples))
    return metrics


def per_image_errors(learner: Learner, ae_params: Params, images_nhw: jax.Array,
                     mask_l: jax.Array | None = None) -> jax.Array:
    """Each image's reconstruction error (MSE per pixel, [-1, 1]), chunked like `evaluate`: [n]; a one-class
    model's anomaly score."""
    n = images_nhw.shape[0]
    chunk = min(learner.eval_batch_size, n)

    def one_chunk(x_u8: jax.Array) -> jax.Array:
        x_bhw = losses.to_unit_range(x_u8)
        return losses.per_example_mse(learner.autoencoder.apply(ae_params, x_bhw, mask_l)[0], x_bhw)

    return jax.lax.map(one_chunk, _chunked(images_nhw, chunk)).reshape(-1)[:n]


def denoising(learner: Learner, ae_params: Params, images_nhw: jax.Array, kind: str, level: jax.Array,
              pca_mean_p: jax.Array, pca_axes_pk: jax.Array, mask_l: jax.Array | None = None) -> Metrics:
    """Test digits corrupted at `level` (digit i from fold_in(EVAL_SEED key, i): the same for any chunking,
    run or model), scored against the clean digits: the autoencoder's reconstruction, PCA's (the noisy
    digit projected on the axes `pca_axes_pk` around `pca_mean_p`) and the noisy digit itself, as mean
    MSE per pixel and mean PSNR on [0, 1] pixels."""
    n = images_nhw.shape[0]
    chunk = min(learner.eval_batch_size, n)
    key = jax.random.PRNGKey(noise.EVAL_SEED)

    def one_chunk(args: tuple[jax.Array, ...]) -> Metrics:
        x_u8, index_b, w_b = args
        clean_bhw = losses.to_unit_range(x_u8)
        noisy_bhw = jax.vmap(lambda i, x: noise.corrupt(jax.random.fold_in(key, i), x, kind, level))(index_b, clean_bhw)
        recon_bhw, _ = learner.autoencoder.apply(ae_params, noisy_bhw, mask_l)
        flat_bp = noisy_bhw.reshape(noisy_bhw.shape[0], -1) - pca_mean_p
        pca_bhw = (flat_bp @ pca_axes_pk @ pca_axes_pk.T + pca_mean_p).reshape(noisy_bhw.shape)
        out = {}
        for name, images_bhw in (("model", recon_bhw), ("pca", pca_bhw), ("noisy", noisy_bhw)):
            out[f"{name}_mse01"] = jnp.sum(w_b * losses.per_example_mse(images_bhw, clean_bhw)) / 4.0
            out[f"{name}_psnr"] = jnp.sum(w_b * noise.psnr01(images_bhw, clean_bhw))
        return out

    parts = jax.lax.map(one_chunk, tuple(_chunked(a, chunk) for a in (
        images_nhw, jnp.arange(n), jnp.ones((n,), jnp.float32))))
    return jax.tree.map(lambda a: a.sum(0) / n, parts)


def encode(learner: Learner, ae_params: Params, images_nhw: jax.Array, mask_l: jax.Array | None = None) -> jax.Array:
    """Codes of a whole image set, chunked like `evaluate`; [n, L]."""
    n = images_nhw.shape[0]
    chunk = min(learner.eval_batch_size, n)
    codes = jax.lax.map(
        lambda x: learner.autoencoder.apply(ae_params, losses.to_unit_range(x), mask_l, method="encode"),
        _chunked(images_nhw, chunk))
    return codes.reshape(-1, codes.shape[-1])[:n]


def decode(learner: Learner, ae_params: Params, codes_nl: jax.Array) -> jax.Array:
    """Images in [-1, 1] decoded from codes, chunked like `evaluate`; [n, 28, 28]."""
    n = codes_nl.shape[0]
    chunk = min(learner.eval_batch_size, n)
    images = jax.lax.map(lambda z: learner.autoencoder.apply(ae_params, z, method="decode"),
                         _chunked(codes_nl, chunk))
    return images.reshape(-1, *images.shape[2:])[:n]


def reconstruct(learner: Learner, ae_params: Params, images_bhw: jax.Array, mask_l: jax.Array | None = None) -> jax.Array:
    """Reconstructions in [-1, 1] of a small fixed batch (for the image grid)."""
    recon_bhw, _ = learner.autoencoder.apply(ae_params, losses.to_unit_range(images_bhw), mask_l)
    return recon_bhw
