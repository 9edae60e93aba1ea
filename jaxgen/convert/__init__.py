"""Converters from official (PyTorch) checkpoints to jaxgen parameters."""
