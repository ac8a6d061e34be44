"""Flax modules: MLP and conv autoencoders, the probe head and the classifier (pure init/apply).

Images are `x_bhw` floats in [-1, 1]; codes are flat vectors `z_bl` so the probe, the sweep masks
and the analysis treat both autoencoders alike. Decoders emit pre-activation `logits_bhw`; the
autoencoder's `output` ("tanh", or "sigmoid" for binary cross-entropy) maps them to images, so a
loss that needs logits (BCE) gets them and every image is still in [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnist_ae.core import choices, losses
from mnist_ae.core.conv_layers import Conv, ConvTranspose, Initializer, max_pool

IMAGE_SHAPE = (28, 28)
NUM_PIXELS = 28 * 28
NUM_CLASSES = 10
CONV_CODE_SHAPE = (2, 2, 64)
CONV_CODE_DIM = math.prod(CONV_CODE_SHAPE)
ACTIVATIONS = {name: getattr(nn, name) for name in choices.ACTIVATIONS}


def _uniform(bound: float) -> Initializer:
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def layer_init(init: str, fan_in: int) -> dict[str, Initializer]:
    """Kernel and bias initializers: PyTorch's default (the reference recipe) or flax's.

    PyTorch draws weights and biases uniformly in +-1/sqrt(fan_in); with it the MLP matches the
    reference test MSE at latent 3 (see DESIGN.md). `fan_in` is passed in because PyTorch's
    ConvTranspose computes it from the output channels, which no flax initializer reproduces.
    """
    if init == "torch":
        bound = 1.0 / math.sqrt(fan_in)
        return {"kernel_init": _uniform(bound), "bias_init": _uniform(bound)}
    return {"kernel_init": nn.initializers.lecun_normal(), "bias_init": nn.initializers.zeros}


class MLP(nn.Module):
    """Flatten, then Dense-(LayerNorm)-activation for each hidden width, then a linear output layer
    (`out=None`: none, the last hidden layer's activations are the output: a trunk for other heads).

    `norm="layer"` puts a LayerNorm between each hidden Dense and its activation: it lets the
    six-layer deep autoencoder train much faster per epoch (see the README's deep-AE table).
    """

    hidden: Sequence[int]
    out: int | None
    init_scheme: str = "torch"
    activation: str = "relu"
    norm: str = "none"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h_bd = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            h_bd = nn.Dense(width, **layer_init(self.init_scheme, h_bd.shape[-1]))(h_bd)
            if self.norm == "layer":
                h_bd = nn.LayerNorm()(h_bd)
            h_bd = ACTIVATIONS[self.activation](h_bd)
        if self.out is None:
            return h_bd
        return nn.Dense(self.out, **layer_init(self.init_scheme, h_bd.shape[-1]))(h_bd)


class MLPDecoder(nn.Module):
    """Code -> mirrored hidden widths -> 784 pixel logits."""

    hidden: Sequence[int]
    init_scheme: str = "torch"
    activation: str = "relu"
    norm: str = "none"

    @nn.compact
    def __call__(self, z_bl: jax.Array) -> jax.Array:
        out_bp = MLP(tuple(reversed(self.hidden)), NUM_PIXELS, self.init_scheme, self.activation, self.norm,
                     name="mlp")(z_bl)
        return out_bp.reshape(-1, *IMAGE_SHAPE)


class ConvEncoder(nn.Module):
    """The reference encoder: 28x28x1 -> 10x10x32 -> 5x5x32 -> 3x3x64 -> 2x2x64, flattened."""

    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, x_bhw: jax.Array) -> jax.Array:
        h = x_bhw[..., None]
        h = Conv(32, 3, stride=3, padding=1, **layer_init(self.init_scheme, 1 * 9))(h)
        h = max_pool(nn.relu(h), 2, stride=2)
        h = Conv(64, 3, stride=2, padding=1, **layer_init(self.init_scheme, 32 * 9))(h)
        h = max_pool(nn.relu(h), 2, stride=1)
        return h.reshape(h.shape[0], -1)


def _conv_transpose(features: int, kernel: int, stride: int, torch_padding: int, init: str) -> nn.Module:
    return ConvTranspose(features, kernel, stride, torch_padding, **layer_init(init, features * kernel * kernel))


class ConvDecoder(nn.Module):
    """The reference decoder: 2x2x64 -> 5x5x32 -> 15x15x16 -> 28x28x1 logits."""

    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, z_bl: jax.Array) -> jax.Array:
        h = z_bl.reshape(-1, *CONV_CODE_SHAPE)
        h = nn.relu(_conv_transpose(32, 3, 2, 0, self.init_scheme)(h))
        h = nn.relu(_conv_transpose(16, 5, 3, 1, self.init_scheme)(h))
        return _conv_transpose(1, 2, 2, 1, self.init_scheme)(h)[..., 0]


class Autoencoder(nn.Module):
    """Encoder and decoder as separate submodules so each can be applied alone.

    `mask_l` (1 for live code units, 0 for padding) lets a sweep member of width l run inside a
    model built at the widest latent size: masked units carry no signal and get no gradient.
    """

    encoder: nn.Module
    decoder: nn.Module
    output: str = "tanh"

    def encode(self, x_bhw: jax.Array, mask_l: jax.Array | None = None) -> jax.Array:
        z_bl = self.encoder(x_bhw)
        return z_bl if mask_l is None else z_bl * mask_l

    def decode(self, z_bl: jax.Array) -> jax.Array:
        """Images in [-1, 1]."""
        return losses.to_image(self.decoder(z_bl), self.output)

    def logits(self, x_bhw: jax.Array, mask_l: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Pre-activation reconstructions and codes: what the training loss needs."""
        z_bl = self.encode(x_bhw, mask_l)
        return self.decoder(z_bl), z_bl

    def __call__(self, x_bhw: jax.Array, mask_l: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Reconstructions in [-1, 1] and codes."""
        logits_bhw, z_bl = self.logits(x_bhw, mask_l)
        return losses.to_image(logits_bhw, self.output), z_bl


def code_dim(model: str, latent_dim: int) -> int:
    """Width of the flat code the probe and the analysis see."""
    return CONV_CODE_DIM if model == "conv" else latent_dim


def make_autoencoder(model: str, hidden: Sequence[int], latent_dim: int, init: str,
                     output: str = "tanh", activation: str = "relu", norm: str = "none") -> Autoencoder:
    """`activation` and `norm` apply to the MLP's hidden layers (the conv model is the reference's)."""
    if model == "conv":
        return Autoencoder(ConvEncoder(init), ConvDecoder(init), output)
    return Autoencoder(MLP(tuple(hidden), latent_dim, init, activation, norm),
                       MLPDecoder(tuple(hidden), init, activation, norm), output)


def make_classifier(hidden: Sequence[int], init: str) -> MLP:
    """Class logits from any input: the probe on the code, or the supervised baseline on pixels."""
    return MLP(tuple(hidden), NUM_CLASSES, init)
