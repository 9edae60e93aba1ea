"""Evaluation metrics for generated images: feature networks, metric formulas, image quality."""
