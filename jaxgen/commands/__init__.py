"""The command layer: one module per command, each holding its flags and its `main`.

    python -m jaxgen                       # the commands, one line each (jaxgen/__main__.py)
    python -m jaxgen <command> [flags]     # runs jaxgen/commands/<command>.py

`common` is what every command does around its main (one-line errors, exit status 2, the
compile cache, the project's argparse parser, absl flag parsing). The library packages
below (data, models, metrics, workflows ...) never parse arguments; a command turns flags
into one call of them. `train`, `evolve` and `evaluate` are absl commands (the
`--config path:variant` + `--config.a.b=v` interface), also run as train.py, evolve.py
and evaluate.py at the repository root; the others are argparse commands.
"""
