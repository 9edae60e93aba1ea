"""Class-conditional DCGAN with knowledge distillation from an EMA teacher.

`models`: Generator / Discriminator (Flax linen, NHWC) and the pure losses
(GAN, KD, EMA). `train`: the jitted train step, `train_and_evaluate(config,
workdir)` (configs/depth_emotion.py) and the `load_generator` / `sample`
helpers for a finished run.
"""
from jaxgen.dcgan.models import (Discriminator, Generator, d_gan_loss, discriminator_loss,
                                 ema_update, g_gan_loss, generator_loss, kd_d_loss, kd_g_loss)

__all__ = ["Discriminator", "Generator", "d_gan_loss", "discriminator_loss", "ema_update",
           "g_gan_loss", "generator_loss", "kd_d_loss", "kd_g_loss"]
