"""jaxgen: synthetic medical-face datasets with StyleGAN2-ADA and friends, in JAX/Flax."""

__version__ = "0.1.0"
