"""Evolutionary search over generator latents (genetic algorithm core in ``ga``)."""
