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

from mnist_ae.core import losses
from mnist_ae.core.models import Autoencoder, MLP
from mnist_ae.core.state import Params, TrainState, learning_rate, new_state

Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Learner:
    """What is trained, as static Python objects (closed over, never traced).

    With an autoencoder: parts "ae" and "probe" (`head` is the probe on the code). Without one:
    the part "classifier" (`head` is the supervised classifier on pixels). `augment_shift`: each
    training digit moves by up to this many pixels, fresh each round (`core.augment`).
    """

    autoencoder: Autoencoder | None
    head: MLP
    optimizers: dict[str, optax.GradientTransformation]
    ae_steps: int = 1
    probe_steps: int = 1
    eval_batch_size: int = 1000
    augment_shift: int = 0

    @property
    def is_autoencoder(self) -> bool:
        return self.autoencoder is not None

    @property
    def batches_per_round(self) -> int:
        return self.ae_steps if self.is_autoencoder else 1


def init_params(learner: Learner, key: jax.Array) -> dict[str, Params]:
    x_bhw = jnp.zeros((1, 28, 28), jnp.float32)
    k_ae, k_clf = jax.random.split(key)
    if not learner.is_autoencoder:
        return {"classifier": learner.head.init(k_clf, x_bhw)}
    ae_params = learner.autoencoder.init(k_ae, x_bhw)
    z_bl = learner.autoencoder.apply(ae_params, x_bhw, method=Autoencoder.encode)
    return {"ae": ae_params, "probe": learner.head.init(k_clf, z_bl)}


def init_state(learner: Learner, seed: int | jax.Array) -> TrainState:
    """Parameters from the seed's first key, the data order from its second. A traced uint32 seed gives
    the same bits as the Python int, and one program for every seed."""
    k_params, k_data = jax.random.split(jax.random.PRNGKey(seed))
    return new_state(init_params(learner, k_params), learner.optimizers, k_data)


def update_part(learner: Learner, state: TrainState, part: str,
                loss_fn: Callable[[Params], tuple[jax.Array, jax.Array]],
                aux_name: str = "accuracy") -> tuple[TrainState, Metrics]:
    """One optimizer step on `part` alone: the other parts are constants of `loss_fn`, whose
    auxiliary output is reported as `aux_name`."""
    params, opt_state = state.params[part], state.opt_states[part]
    with jax.named_scope(part):  # groups the step's operations in the TensorBoard graph (`writers.graph`)
        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = learner.optimizers[part].update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    state = state.replace(params={**state.params, part: params},
                          opt_states={**state.opt_states, part: opt_state})
    return state, {"loss": loss, aux_name: acc, "grad_norm": optax.tree.norm(grads)}


def _mean(metrics: list[Metrics], prefix: str) -> Metrics:
    return {f"{prefix}{k}": jnp.mean(jnp.stack([m[k] for m in metrics])) for k in metrics[0]}


def train_round(learner: Learner, state: TrainState, x_gbhw: jax.Array, y_gb: jax.Array,
                mask_l: jax.Array | None = None) -> tuple[TrainState, Metrics]:
    """`ae_steps` AE updates (probe frozen), then `probe_steps` probe updates (AE frozen).

    Probe step j trains on the codes of the round's batch j mod ae_steps, encoded by the
    just-updated AE under stop_gradient. The schedule is static and unrolled.
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
    for x_bhw in x_gbhw:
        def recon_loss(p: Params, x_bhw: jax.Array = x_bhw) -> tuple[jax.Array, jax.Array]:
            logits_bhw, _ = ae.apply(p, x_bhw, mask_l, method=Autoencoder.logits)
            return losses.recon_loss(logits_bhw, x_bhw, ae.output)

        state, m = update_part(learner, state, "ae", recon_loss, aux_name="recon_mse")
        ae_metrics.append(m)
    codes_gbl = [ae.apply(state.params["ae"], x, mask_l, method=Autoencoder.encode) for x in x_gbhw]
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
    bce = {"train/recon_bce": ae_m["train/ae_loss"]} if ae.output == "sigmoid" else {}
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
    """Whole-set metrics in one call: chunks under lax.map, sums, then means over real rows."""
    n = images_nhw.shape[0]
    chunk = min(learner.eval_batch_size, n)
    weights_n = jnp.ones((n,), jnp.float32)

    def one_chunk(args: tuple[jax.Array, ...]) -> Metrics:
        x_u8, y_b, w_b = args
        x_bhw = losses.to_unit_range(x_u8)
        if not learner.is_autoencoder:
            logits = learner.head.apply(params["classifier"], x_bhw)
            sq_b = jnp.zeros_like(w_b)
        else:
            recon_bhw, z_bl = learner.autoencoder.apply(params["ae"], x_bhw, mask_l)
            sq_b = losses.per_example_mse(recon_bhw, x_bhw)
            logits = learner.head.apply(params["probe"], z_bl)
        ce_b = optax.softmax_cross_entropy_with_integer_labels(logits, y_b)
        return {"sq": jnp.sum(sq_b * w_b), "ce": jnp.sum(ce_b * w_b),
                "confusion": losses.confusion_counts(y_b, jnp.argmax(logits, -1), w_b, logits.shape[-1])}

    parts = jax.lax.map(one_chunk, (_chunked(images_nhw, chunk), _chunked(labels_n.astype(jnp.int32), chunk),
                                    _chunked(weights_n, chunk)))
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
    return metrics


def encode(learner: Learner, ae_params: Params, images_nhw: jax.Array, mask_l: jax.Array | None = None) -> jax.Array:
    """Codes of a whole image set, chunked like `evaluate`; [n, L]."""
    n = images_nhw.shape[0]
    chunk = min(learner.eval_batch_size, n)
    codes = jax.lax.map(
        lambda x: learner.autoencoder.apply(ae_params, losses.to_unit_range(x), mask_l, method=Autoencoder.encode),
        _chunked(images_nhw, chunk))
    return codes.reshape(-1, codes.shape[-1])[:n]


def decode(learner: Learner, ae_params: Params, codes_nl: jax.Array) -> jax.Array:
    """Images in [-1, 1] decoded from codes, chunked like `evaluate`; [n, 28, 28]."""
    n = codes_nl.shape[0]
    chunk = min(learner.eval_batch_size, n)
    images = jax.lax.map(lambda z: learner.autoencoder.apply(ae_params, z, method=Autoencoder.decode),
                         _chunked(codes_nl, chunk))
    return images.reshape(-1, *images.shape[2:])[:n]


def reconstruct(learner: Learner, ae_params: Params, images_bhw: jax.Array, mask_l: jax.Array | None = None) -> jax.Array:
    """Reconstructions in [-1, 1] of a small fixed batch (for the image grid)."""
    recon_bhw, _ = learner.autoencoder.apply(ae_params, losses.to_unit_range(images_bhw), mask_l)
    return recon_bhw
