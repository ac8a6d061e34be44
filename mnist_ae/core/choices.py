"""The names a config may choose among, free of JAX: config validation reads them here, so a bad value
is reported before JAX loads (a second and more), and the modules that implement them key on them."""

OUTPUTS = {"mse": "tanh", "bce": "sigmoid"}  # training loss -> the decoder's output activation
ACTIVATIONS = ("relu", "gelu", "tanh")  # flax.linen's functions of these names (tanh: the VAE anchor's)
NORMS = ("none", "layer")
