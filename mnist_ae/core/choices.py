"""The names a config may choose among (and the noise spec's parser), free of JAX: config validation reads
them here, so a bad value is reported before JAX loads (a second and more), and the modules that implement
them key on them."""

OUTPUTS = {"mse": "tanh", "bce": "sigmoid"}  # training loss -> the decoder's output activation
ACTIVATIONS = ("relu", "gelu", "tanh")  # flax.linen's functions of these names (tanh: the VAE anchor's)
NORMS = ("none", "layer")
NOISE_KINDS = ("gaussian", "masking")  # core.noise: a denoising autoencoder's input corruptions


def parse_noise(spec: str) -> tuple[str, float] | None:
    """'gaussian:0.5' -> ("gaussian", 0.5); '' -> None. Raises ValueError naming what is wrong."""
    if not spec:
        return None
    kind, _, level = spec.partition(":")
    try:
        value = float(level)
    except ValueError:
        value = None
    if kind not in NOISE_KINDS or value is None:
        raise ValueError(f"input_noise={spec!r}: use gaussian:SIGMA or masking:P (levels on [0, 1] pixels), "
                         "e.g. gaussian:0.5, or '' for none")
    if not (0 < value < 1 if kind == "masking" else 0 < value <= 1):
        raise ValueError(f"input_noise={spec!r}: the level must be in (0, 1) for masking and (0, 1] for gaussian")
    return kind, value
