"""mnist_ae: train and watch autoencoder representations of handwritten digits in JAX."""
