"""Flax (linen) networks."""
