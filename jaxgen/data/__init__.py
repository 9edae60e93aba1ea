"""Datasets: the embedded procedural demo data and loaders for user data."""
