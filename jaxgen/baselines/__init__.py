"""Non-GAN generative baselines for the synthetic-data experiments.

* :mod:`jaxgen.baselines.vae` -- a class-conditional convolutional VAE (Flax);
* :mod:`jaxgen.baselines.density` -- per-class Gaussian mixture and kernel
  density models on PCA coordinates of the pixels (scikit-learn).

Import the submodules directly; this package imports nothing heavy.
"""
