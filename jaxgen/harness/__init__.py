"""The training harness every trainer shares: workdir, resume, ticks, logs, checkpoints.

`loop`: `train(experiment, config, workdir)`, the one training loop.
`experiment`: `Experiment`, what a product (StyleGAN2-ADA, the DCGAN, the classifiers)
supplies, field by field and hook by hook; `TickInfo`, what its per-tick hooks get.
`schedule`: `Schedule`, a run's length, ticks and snapshot intervals in steps.
`stop_signals`: `StopSignals`, SIGTERM / SIGINT / SIGUSR1 as a stop with a checkpoint.
`batches`: the real batch of a step as a pure function of (seed, step); grid inputs.
`parallel`: the data-parallel mesh (state replicated, batch sharded, donation).
`validate`: what is checked before any data is loaded or file created (settings, paths,
a workdir of the user's own or of another config).
`logs`: metrics.jsonl, TensorBoard scalars, the progress line.
`checkpoint`: orbax checkpoints of a whole train state (crash-safe), stand-alone
networks, and the run descriptor run.json. Import the submodules directly.
"""
