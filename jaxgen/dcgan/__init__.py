"""Class-conditional DCGAN with knowledge distillation from an EMA teacher.

`models`: Generator / Discriminator (Flax linen, NHWC) and the pure losses
(GAN, KD, EMA). `train`: the jitted train step and `train_and_evaluate(config,
workdir)` (configs/depth_emotion.py), the experiment the shared harness runs.
A finished run opens with `jaxgen.runs.open_run(workdir)` (teacher G of the
latest checkpoint; `Run.generate` samples it).
"""
from jaxgen.dcgan.models import (Discriminator, Generator, d_gan_loss, discriminator_loss,
                                 ema_update, g_gan_loss, generator_loss, kd_d_loss, kd_g_loss)

__all__ = ["Discriminator", "Generator", "d_gan_loss", "discriminator_loss", "ema_update",
           "g_gan_loss", "generator_loss", "kd_d_loss", "kd_g_loss"]
