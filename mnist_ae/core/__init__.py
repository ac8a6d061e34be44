"""The pure core: models, layers, losses, the train state, steps, the scanned epoch, sweeps, PCA.

Nothing here reads a config object, a file, a clock, a global or a writer: every function is a
pure function of pytrees and static Python values, so it can be jitted, scanned and vmapped.
`mnist_ae.build` is the one place that turns a config into the objects defined here.

Shape letters used in array names (`x_bhw` is a [batch, height, width] array):

  b  batch            n  examples of a whole set (train or test)
  g  group: the AE batches of one round          r  rounds of an epoch
  h, w  image height and width                   c  channels
  l  latent units (code width)                   k  components / classes counted
  m  sweep members                               d  feature dimensions (PCA input)

So `idx_rgb` is [rounds, group, batch] indices, `z_bl` a batch of codes, `masks_ml` one latent
mask per member.
"""
