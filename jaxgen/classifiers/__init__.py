"""Image classifiers (Keras-compatible ResNet-V2, Inception-ResNet-V2, a small CNN) and their training."""
