"""Small shared helpers: image grids, plots, logging."""
