"""StyleGAN2-ADA in Flax: what NVIDIA's stylegan2-ada-pytorch computes.

Models: `generator` (`mapping`, `synthesis`, built from `layers` with the
`bias_act` and FIR `resample` ops) and `discriminator`; `networks` builds both
from a config and initialises them. Training: pure `loss` functions, the ADA
`augment` pipeline, the one-pytree `state`, the jitted `step` (gradient
accumulation in `accumulation`), and `train`, the experiment the shared harness
(`jaxgen.harness`) runs. Using a generator: `controls`, `projector` (its loss terms
in `projection_loss`). NVIDIA's side:
`nvidia` converts state dicts both ways, `pkl_to_orbax` reads official
snapshots through the restricted unpickler (`jaxgen.utils.safe_pickle`).

Import the submodules directly; this package imports nothing.
"""
