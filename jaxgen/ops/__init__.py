"""Low-level array ops (FIR resampling, bias+activation) shared by the networks."""
