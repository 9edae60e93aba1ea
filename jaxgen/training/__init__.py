"""StyleGAN2-ADA training: losses, augmentation, train state, the loop."""
