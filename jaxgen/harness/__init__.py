"""The training harness every trainer shares: workdir, resume, ticks, logs, checkpoints.

`checkpoint`: orbax checkpoints of a whole train state (crash-safe) and of
stand-alone networks. Import the submodules directly.
"""
