"""Model shapes, exact parameter counts against the reference PyTorch models, and the init."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_ae.core.models import Autoencoder, code_dim, make_autoencoder, make_classifier


def count(params) -> int:
    return sum(int(np.size(p)) for p in jax.tree.leaves(params))


X_BHW = jnp.zeros((5, 28, 28))


@pytest.mark.parametrize("model, latent, expected", [
    ("mlp", 3, 218_643),   # 784-128-64-3-64-128-784, the reference PyTorch model
    ("mlp", 64, 226_512),  # 784-128-64-64-64-128-784: (100480+8256+4160) + (4160+8320+101136)
    ("conv", 0, 50_161),   # the reference conv autoencoder
])
def test_parameter_counts_and_shapes(model, latent, expected):
    ae = make_autoencoder(model, (128, 64), latent, "torch")
    params = ae.init(jax.random.PRNGKey(0), X_BHW)
    recon, z = ae.apply(params, X_BHW)
    chex.assert_shape(recon, (5, 28, 28))
    chex.assert_shape(z, (5, 256 if model == "conv" else latent))
    assert count(params) == expected


def test_the_deep_autoencoder_experiment_is_the_papers_network():
    """experiments/deep_autoencoder.py: 784-1000-500-250-30 and mirrored back (Hinton & Salakhutdinov
    2006), weights and biases of each layer counted by hand."""
    from mnist_ae import build
    from helpers import experiment_config

    widths = [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
    dense = sum(a * b + b for a, b in zip(widths, widths[1:]))
    assert dense == 1_418_280 + 1_419_034
    layer_norms = 2 * 2 * (1000 + 500 + 250)  # a scale and a bias per unit of the six hidden layers
    config = experiment_config("deep_autoencoder")
    learner = build.learner(config)
    state = jax.eval_shape(lambda: build.initial_state(config))
    assert count(state.params["ae"]) == dense + layer_norms
    ae = learner.autoencoder
    assert (ae.output, ae.encoder.activation, ae.encoder.norm, ae.decoder.norm) == ("sigmoid", "gelu", "layer", "layer")
    assert config.lr_schedule == "warmup_cosine"


def test_conv_encode_then_decode_is_the_whole_model():
    ae = make_autoencoder("conv", (), 0, "torch")
    params = ae.init(jax.random.PRNGKey(1), X_BHW)
    x = jax.random.uniform(jax.random.PRNGKey(2), (5, 28, 28), minval=-1, maxval=1)
    recon, z = ae.apply(params, x)
    z2 = ae.apply(params, x, method=Autoencoder.encode)
    chex.assert_trees_all_equal(z2, z)
    chex.assert_trees_all_close(ae.apply(params, z2, method=Autoencoder.decode), recon)


def test_mlp_autoencoder_is_the_reference_network_written_in_numpy():
    """784 -> 128 -> 64 -> 3 (ReLU between, linear code) -> 64 -> 128 -> 784, tanh, 28x28: computed
    by hand from the parameters, with codes large enough that tanh saturates at exactly +-1."""
    ae = make_autoencoder("mlp", (128, 64), 3, "torch")
    params = ae.init(jax.random.PRNGKey(0), X_BHW)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    x = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (5, 28, 28), minval=-1, maxval=1))

    def dense(h, layer):
        return h @ layer["kernel"] + layer["bias"]

    enc = p["encoder"]
    h = np.maximum(dense(x.reshape(5, 784), enc["Dense_0"]), 0)
    h = np.maximum(dense(h, enc["Dense_1"]), 0)
    z = dense(h, enc["Dense_2"])  # the code is linear: no ReLU on it
    assert (z < 0).any()
    recon, z_model = ae.apply(params, jnp.asarray(x))
    np.testing.assert_allclose(z_model, z, rtol=1e-4, atol=1e-5)

    def pre_tanh(z):
        dec = p["decoder"]["mlp"]
        h = np.maximum(dense(z, dec["Dense_0"]), 0)
        h = np.maximum(dense(h, dec["Dense_1"]), 0)
        return dense(h, dec["Dense_2"]).reshape(-1, 28, 28)

    np.testing.assert_allclose(recon, np.tanh(pre_tanh(z)), rtol=1e-4, atol=1e-5)
    # Codes 1e4 times larger: most pre-activations are in the thousands, where tanh(a) is sign(a)
    # in float32 exactly; the decoder's output there must be exactly -1 or +1, never beyond.
    big = 1e4 * z
    out = np.asarray(ae.apply(params, jnp.asarray(big, jnp.float32), method=Autoencoder.decode))
    a = pre_tanh(big)
    saturated = np.abs(a) > 20
    assert saturated.mean() > 0.5 and (a[saturated] > 0).any() and (a[saturated] < 0).any()
    np.testing.assert_array_equal(out[saturated], np.sign(a[saturated]))


def test_layer_norm_autoencoder_written_in_numpy():
    """norm="layer": Dense, LayerNorm (eps 1e-6, its own scale and bias), ReLU in every hidden layer
    of both halves; the code and the output layer stay linear. Scales and biases are drawn at random
    so that a LayerNorm without them, or in the wrong place, cannot match."""
    ae = make_autoencoder("mlp", (32, 16), 4, "torch", norm="layer")
    params = ae.init(jax.random.PRNGKey(0), X_BHW)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(3), len(leaves))
    params = jax.tree.unflatten(treedef, [leaf + 0.5 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)])
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    x = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (5, 28, 28), minval=-1, maxval=1))

    def hidden(h, mlp, i):
        a = h @ mlp[f"Dense_{i}"]["kernel"] + mlp[f"Dense_{i}"]["bias"]
        a = (a - a.mean(-1, keepdims=True)) / np.sqrt(a.var(-1, keepdims=True) + 1e-6)
        return np.maximum(a * mlp[f"LayerNorm_{i}"]["scale"] + mlp[f"LayerNorm_{i}"]["bias"], 0)

    enc, dec = p["encoder"], p["decoder"]["mlp"]
    h = hidden(hidden(x.reshape(5, 784), enc, 0), enc, 1)
    z = h @ enc["Dense_2"]["kernel"] + enc["Dense_2"]["bias"]
    h = hidden(hidden(z, dec, 0), dec, 1)
    logits = (h @ dec["Dense_2"]["kernel"] + dec["Dense_2"]["bias"]).reshape(5, 28, 28)
    recon, z_model = ae.apply(params, jnp.asarray(x))
    np.testing.assert_allclose(z_model, z, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(recon, np.tanh(logits), rtol=1e-4, atol=1e-4)
    assert set(p["encoder"]) == {"Dense_0", "Dense_1", "Dense_2", "LayerNorm_0", "LayerNorm_1"}


def test_torch_init_is_uniform_within_one_over_sqrt_fan_in():
    ae = make_autoencoder("mlp", (128, 64), 3, "torch")
    params = ae.init(jax.random.PRNGKey(0), X_BHW)["params"]
    kernel = params["encoder"]["Dense_0"]["kernel"]
    bias = params["encoder"]["Dense_0"]["bias"]
    bound = 1 / math.sqrt(784)
    assert float(jnp.max(jnp.abs(kernel))) <= bound and float(jnp.max(jnp.abs(bias))) <= bound
    # uniform on [-b, b] has std b/sqrt(3); flax's lecun_normal would have std 1/sqrt(784)
    np.testing.assert_allclose(float(jnp.std(kernel)), bound / math.sqrt(3), rtol=0.02)
    assert float(jnp.min(jnp.abs(bias))) > 0  # biases are drawn, not zero


def test_mask_zeroes_padded_code_units():
    ae = make_autoencoder("mlp", (32,), 6, "torch")
    params = ae.init(jax.random.PRNGKey(0), X_BHW)
    x = jax.random.uniform(jax.random.PRNGKey(1), (5, 28, 28))
    mask = (jnp.arange(6) < 4).astype(jnp.float32)
    _, z = ae.apply(params, x, mask)
    chex.assert_trees_all_equal(z[:, 4:], jnp.zeros((5, 2)))
    assert float(jnp.min(jnp.abs(z[:, :4]))) > 0


def test_classifier_logits_shape():
    clf = make_classifier((16,), "flax")
    params = clf.init(jax.random.PRNGKey(0), X_BHW)
    chex.assert_shape(clf.apply(params, X_BHW), (5, 10))


def test_conv_layers_use_pytorchs_fan_in_for_their_init_bounds():
    """PyTorch's default init is uniform in +-1/sqrt(fan_in), with fan_in = in_channels * k * k for a
    Conv2d and out_channels * k * k for a ConvTranspose2d (its weight is [in, out, k, k]). Hundreds of
    draws per kernel put the largest |w| within a few percent of the bound."""
    ae = make_autoencoder("conv", (), 0, "torch")
    p = ae.init(jax.random.PRNGKey(0), X_BHW)["params"]
    fan_in = {("encoder", "Conv_0"): 1 * 3 * 3, ("encoder", "Conv_1"): 32 * 3 * 3,
              ("decoder", "ConvTranspose_0"): 32 * 3 * 3, ("decoder", "ConvTranspose_1"): 16 * 5 * 5,
              ("decoder", "ConvTranspose_2"): 1 * 2 * 2}
    chex.assert_trees_all_equal_structs({k: None for k in fan_in},
                                        {(part, name): None for part in p for name in p[part]})
    for (part, name), fan in fan_in.items():
        bound = 1 / math.sqrt(fan)
        for leaf in ("kernel", "bias"):
            top = float(jnp.max(jnp.abs(p[part][name][leaf])))
            draws = p[part][name][leaf].size
            assert top <= bound, (name, leaf)
            if draws >= 16:  # the largest of n uniform |w| falls short of the bound by about 1/n
                assert top >= bound * (1 - 5 / draws), (name, leaf, top, bound)


def test_the_conv_encoders_first_layer_is_a_3x3_stride_3_conv_padded_by_1():
    """The reference's first layer, Conv2d(1, 32, 3, stride=3, padding=1), written out in numpy: output
    pixel (i, j) sees input rows and columns 3i - 1 .. 3i + 1 (zeros outside). A padding of 2 also gives
    10 x 10, shifted by one pixel."""
    encoder = make_autoencoder("conv", (), 0, "torch").encoder
    x_bhw = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (1, 28, 28), minval=-1, maxval=1))
    params = encoder.init(jax.random.PRNGKey(0), x_bhw)["params"]
    _, state = encoder.apply({"params": params}, x_bhw, capture_intermediates=True, mutable=["intermediates"])
    p = jax.tree.map(np.asarray, params["Conv_0"])
    got_hwc = np.asarray(state["intermediates"]["Conv_0"]["__call__"][0][0])
    padded = np.pad(x_bhw[0].astype(np.float64), 1)
    want_hwc = np.array([[np.einsum("ab,abc->c", padded[3 * i:3 * i + 3, 3 * j:3 * j + 3], p["kernel"][:, :, 0])
                          for j in range(10)] for i in range(10)]) + np.asarray(p["bias"])
    np.testing.assert_allclose(got_hwc, want_hwc, atol=1e-5)


def test_code_dim_is_the_conv_codes_flat_size_or_the_latent_size():
    assert code_dim("conv", 3) == 2 * 2 * 64
    assert code_dim("mlp", 3) == 3
