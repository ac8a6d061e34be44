"""The patch-matmul conv layers against flax's own: same parameters, same outputs and gradients."""

from __future__ import annotations

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from mnist_ae.core.conv_layers import Conv, ConvTranspose, max_pool


def _outputs_and_grads(layer: nn.Module, params, x):
    def loss(params, x):
        return jnp.sum(jnp.sin(layer.apply(params, x)))

    return layer.apply(params, x), jax.grad(loss, argnums=(0, 1))(params, x)


# (input size, in, out, kernel, stride, padding): the conv autoencoder's layers, then odd cases.
@pytest.mark.parametrize("size, c_in, c_out, k, s, p", [
    (28, 1, 32, 3, 3, 1),  # the encoder's first layer; the rest are the slow tier's
    *(pytest.param(*case, marks=pytest.mark.slow) for case in [(5, 32, 64, 3, 2, 1), (7, 3, 4, 4, 2, 0), (6, 2, 3, 3, 1, 2)]),
])
def test_conv_matches_flax(size, c_in, c_out, k, s, p):
    x = jax.random.normal(jax.random.PRNGKey(0), (3, size, size, c_in))
    ours = Conv(c_out, k, stride=s, padding=p)
    flax_layer = nn.Conv(c_out, (k, k), strides=s, padding=p)
    params = flax_layer.init(jax.random.PRNGKey(1), x)
    chex.assert_trees_all_equal(ours.init(jax.random.PRNGKey(1), x), params)  # same names, shapes, values
    chex.assert_trees_all_close(_outputs_and_grads(ours, params, x), _outputs_and_grads(flax_layer, params, x),
                                atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size, c_in, c_out, k, s, p", [
    (15, 16, 1, 2, 2, 1),  # the decoder's last layer (28 px out); its others and the odd shapes are slow
    *(pytest.param(*case, marks=pytest.mark.slow) for case in [
        (2, 64, 32, 3, 2, 0), (5, 32, 16, 5, 3, 1),  # the decoder: 5, 15 px out
        (4, 3, 2, 4, 2, 1), (3, 2, 5, 2, 3, 0), (3, 2, 2, 3, 1, 1)]),  # k = s*m, k < s, stride 1
])
def test_conv_transpose_matches_flax_with_pytorch_padding(size, c_in, c_out, k, s, p):
    x = jax.random.normal(jax.random.PRNGKey(0), (3, size, size, c_in))
    ours = ConvTranspose(c_out, k, s, p)
    pad = k - 1 - p  # PyTorch's padding p, in XLA's terms on the dilated input
    flax_layer = nn.ConvTranspose(c_out, (k, k), strides=(s, s), padding=((pad, pad), (pad, pad)))
    params = flax_layer.init(jax.random.PRNGKey(1), x)
    chex.assert_trees_all_equal(ours.init(jax.random.PRNGKey(1), x), params)
    out, grads = _outputs_and_grads(ours, params, x)
    chex.assert_shape(out, (3, (size - 1) * s + k - 2 * p, (size - 1) * s + k - 2 * p, c_out))
    chex.assert_trees_all_close((out, grads), _outputs_and_grads(flax_layer, params, x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size, window, stride", [(10, 2, 2), (3, 2, 1), (7, 3, 2)])
def test_max_pool_matches_flax(size, window, stride):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, 4))

    def grads(pool):
        return jax.grad(lambda x: jnp.sum(jnp.sin(pool(x))))(x)

    theirs = lambda x: nn.max_pool(x, (window, window), strides=(stride, stride))  # noqa: E731
    ours = lambda x: max_pool(x, window, stride)  # noqa: E731
    chex.assert_trees_all_close((ours(x), grads(ours)), (theirs(x), grads(theirs)))


def test_layers_refuse_shapes_with_no_output():
    x = jnp.zeros((1, 2, 2, 1))
    with pytest.raises(ValueError, match="window does not fit"):
        Conv(1, 5).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="a 3x3 window does not fit a 2x5 input padded by 0"):
        max_pool(jnp.zeros((1, 2, 5, 1)), 3, 1)  # too short, though wide enough
    with pytest.raises(ValueError, match="a 3x3 window does not fit a 5x2 input padded by 0"):
        max_pool(jnp.zeros((1, 5, 2, 1)), 3, 1)  # too narrow: (2 - 3) // 1 + 1 = 0 columns
    pool = functools.partial(max_pool, window=2, stride=1)
    assert jax.eval_shape(pool, jnp.zeros((1, 2, 3, 1))).shape == (1, 1, 2, 1)  # one row is still an output
    assert jax.eval_shape(pool, jnp.zeros((1, 3, 2, 1))).shape == (1, 2, 1, 1)  # and so is one column
    with pytest.raises(ValueError, match="to nothing"):
        ConvTranspose(1, 3, 2, padding=3).init(jax.random.PRNGKey(0), x)
    for shape in ((1, 1, 3, 1), (1, 3, 1, 1)):  # one side cropped to exactly nothing: (1 - 1) * 2 + 2 - 2 * 1 = 0
        with pytest.raises(ValueError, match="to nothing"):
            jax.eval_shape(lambda x: ConvTranspose(1, 2, 2, padding=1).init(jax.random.PRNGKey(0), x), jnp.zeros(shape))
    # one pixel is still an output: (1 - 1) * 1 + 3 - 2 * 1 = 1 on each side
    one = jax.eval_shape(lambda x: ConvTranspose(1, 3, 1, padding=1).init_with_output(jax.random.PRNGKey(0), x)[0],
                         jnp.zeros((1, 1, 1, 1)))
    assert one.shape == (1, 1, 1, 1)


def test_conv_defaults_to_stride_1_and_no_padding():
    """As `nn.Conv(features, (k, k), strides=1, padding=0)`: a 3x3 kernel on 5x5 gives 3x3; and as
    PyTorch's ConvTranspose2d(padding=0): (5 - 1) * 2 + 3 = 11 rows with stride 2."""
    x = jnp.zeros((1, 5, 5, 2))
    for layer, size in ((Conv(4, 3), 3), (ConvTranspose(4, 3, 2), 11)):
        out = jax.eval_shape(lambda x, layer=layer: layer.init_with_output(jax.random.PRNGKey(0), x)[0], x)
        assert out.shape == (1, size, size, 4), layer
