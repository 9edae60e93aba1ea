"""Workflows that combine the products: `generate` (export a dataset from a generator
run), `compare` (one table across generators and baselines), `pipeline` (the acne
paper's hierarchical pipeline). Import the submodules directly.
"""
