"""Workflows that combine the products; the layer just below the commands.

`generate` (a checked dataset from a generator run), `labelled` (unconditional GAN +
sorter + labelled export), `pipeline` (the acne paper's hierarchical pipeline),
`demo` (`make demo`), `compare` (one table across generators and baselines),
`images` (seed grids, mixing, interpolation), `project` (projecting image files),
`datasheet` (a datasheet for synthetic folders or an export), `evolve` (the GA run of
`python evolve.py`). No package below imports a workflow. Import the submodules directly.
"""
