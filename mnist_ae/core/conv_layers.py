"""Conv, transposed conv and max pool as a patch gather plus one matmul (square windows).

Why not `nn.Conv` / `nn.ConvTranspose`: XLA:CPU runs the conv autoencoder's small strided
convolutions slowly, and it computes a transposed convolution on a zero-dilated input (at stride 3,
8 of every 9 multiplies are by zero). The same maths written as `patches @ kernel` trains the conv
autoencoder about 5x faster there (README, `benchmarks/train_throughput.py`). The modules keep
flax's class, parameter names, shapes, initialisation and kernel orientation, so parameters and
checkpoints are interchangeable with the flax layers, and the outputs match theirs
(tests/test_conv_layers.py).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


def patches(x_bhwc: jax.Array, window: int, stride: int, pad: int) -> jax.Array:
    """Every `window` x `window` patch at `stride` after zero padding: [b, oh, ow, window**2, c]."""
    x = jnp.pad(x_bhwc, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh, ow = ((x.shape[1] - window) // stride + 1, (x.shape[2] - window) // stride + 1)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"a {window}x{window} window does not fit a {x_bhwc.shape[1]}x{x_bhwc.shape[2]} input "
                         f"padded by {pad}")
    return jnp.stack([x[:, dy:dy + stride * (oh - 1) + 1:stride, dx:dx + stride * (ow - 1) + 1:stride]
                      for dy in range(window) for dx in range(window)], axis=3)


def max_pool(x_bhwc: jax.Array, window: int, stride: int) -> jax.Array:
    """`nn.max_pool` with VALID padding; its gradient avoids XLA:CPU's slow select-and-scatter."""
    return patches(x_bhwc, window, stride, 0).max(axis=3)


class Conv(nn.Module):
    """`nn.Conv(features, (k, k), strides=stride, padding=padding)` with kernel [k, k, in, out]."""

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x_bhwc: jax.Array) -> jax.Array:
        k, c_in = self.kernel_size, x_bhwc.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (k, k, c_in, self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        p_bhwkc = patches(x_bhwc, k, self.stride, self.padding)
        return p_bhwkc.reshape(*p_bhwkc.shape[:3], -1) @ kernel.reshape(-1, self.features) + bias


class ConvTranspose(nn.Module):
    """PyTorch's `ConvTranspose2d(kernel k, stride s, padding p)`, with flax's kernel orientation.

    Sub-pixel form: output pixel `a*s + r` (before cropping p) sums input pixels `a - j` times
    kernel tap `r + j*s`, so each of the s*s phases r is an ordinary stride-1 correlation with a
    ceil(k/s)-wide slice of the kernel. All phases share one patch gather and one matmul; the
    phases are then interleaved into the s-times larger image and cropped.
    """

    features: int
    kernel_size: int
    stride: int
    padding: int = 0  # PyTorch's: rows cropped from each side of the full output
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x_bhwc: jax.Array) -> jax.Array:
        k, s, c_in, c_out = self.kernel_size, self.stride, x_bhwc.shape[-1], self.features
        kernel = self.param("kernel", self.kernel_init, (k, k, c_in, c_out))
        bias = self.param("bias", self.bias_init, (c_out,))
        m = -(-k // s)  # kernel taps per phase
        # flax's kernel is PyTorch's flipped; zero-pad taps to m*s, split tap t = r + (m-1-j)*s.
        taps = jnp.pad(kernel[::-1, ::-1], ((0, m * s - k), (0, m * s - k), (0, 0), (0, 0)))
        taps = taps.reshape(m, s, m, s, c_in, c_out)[::-1, :, ::-1]  # [jy, ry, jx, rx, in, out]
        phase_kernel = taps.transpose(0, 2, 4, 1, 3, 5).reshape(m * m * c_in, s * s * c_out)
        p_bhwkc = patches(x_bhwc, m, 1, m - 1)
        b, a_h, a_w = p_bhwkc.shape[:3]
        y = p_bhwkc.reshape(b, a_h, a_w, -1) @ phase_kernel  # [b, a_h, a_w, ry * rx * out]
        y = y.reshape(b, a_h, a_w, s, s, c_out).transpose(0, 1, 3, 2, 4, 5).reshape(b, a_h * s, a_w * s, c_out)
        p = self.padding
        out_h, out_w = ((x_bhwc.shape[1] - 1) * s + k - 2 * p, (x_bhwc.shape[2] - 1) * s + k - 2 * p)
        if out_h <= 0 or out_w <= 0:
            raise ValueError(f"padding {p} crops a {x_bhwc.shape[1]}x{x_bhwc.shape[2]} input's transposed conv "
                             f"(kernel {k}, stride {s}) to nothing")
        return y[:, p:p + out_h, p:p + out_w] + bias
