"""What a product supplies to the training loop: the `Experiment` base class, and `TickInfo`,
what its per-tick hooks are told.

`jaxgen.harness.loop.train(ExperimentClass, config, workdir)` runs a product
(StyleGAN2-ADA, the DCGAN, a classifier) in the shared loop. The product
subclasses `Experiment`; the loop uses it in this order:

  1. class settings, read before any instance exists (to check the config before
     the data loads): `resolution_range`, `power_of_two`, `resume_fields`;
  2. `ExperimentClass(config, workdir)`: the constructor loads the data, builds
     the models and sets the instance fields (`descriptor`, `schedule`, ...);
  3. `init_state` (also under `jax.eval_shape`, the target a checkpoint is
     restored into) and, for a run that starts from scratch, `fresh_state`;
  4. `banner`, `begin`; then at each step `step_options`, `local_batch` (its
     default slices `batch`) and the jitted `train_step`;
  5. at the end of each tick `evaluate`, `tick_line`, `sample` (image snapshots)
     and `after_tick`; after the last checkpoint `finish`.

The train state is any pytree with an int32 scalar field `step` (steps done).
Every host array named here has the batch (or grid cell) on its leading axis.
"""
from __future__ import annotations

import dataclasses
import pathlib
import types
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Tuple

import jax
import numpy as np

from jaxgen.harness.batches import Grid, process_rows
from jaxgen.harness.schedule import Schedule

# (state, *batch arrays, key, **step_options) -> (new state, {name: device scalar}); jitted by the loop
StepFn = Callable[..., Tuple[Any, Dict[str, Any]]]


@dataclasses.dataclass
class TickInfo:
    """Where the run stands at the end of a tick (what `evaluate`, `after_tick` and `finish` get).

    index: the tick's number (1-based; `finish` gets the last logged one); step / nimg: steps
    and real images done; done: the run's last tick; image_snapshot: a sample grid is due;
    history: the metrics.jsonl rows so far (in `after_tick` and `finish` this tick's row is last).
    """
    index: int
    step: int
    nimg: int
    done: bool
    image_snapshot: bool
    history: List[Dict[str, Any]]


class Experiment:
    """What a product supplies to `jaxgen.harness.loop.train` (see the module docstring).

    A subclass sets the class settings it changes, sets every required instance field in
    its constructor and overrides the hooks that apply; the defaults below fit the rest.
    """

    # --- class settings: the same for every run of the product ------------------------------
    # What run.json calls this kind of run ('stylegan2' | 'dcgan' | 'classifier'); read by
    # `train` after the constructor (descriptor checks, run.json) and by `banner`.
    kind: ClassVar[str] = ""
    # The next three are read by `train` from the class itself, before the constructor runs,
    # so that a config that cannot work is refused before any data loads.
    # The config.data.resolution range the models build, (lo, hi) pixels (`validate.check_config`).
    resolution_range: ClassVar[Tuple[int, int]] = (4, 1024)
    # Whether config.data.resolution must also be a power of two (False: any size in the range).
    power_of_two: ClassVar[bool] = True
    # Config fields ('section.name') beyond `validate.RESUME_FIELDS` that a resumed run must
    # keep because they shape the train state (e.g. frozen layers change the optimizer tree);
    # `validate.check_same_config` compares them with the workdir's config.json.
    resume_fields: ClassVar[Tuple[str, ...]] = ()

    # --- required instance fields: set by the constructor ------------------------------------
    # run.json's fields beside `kind`: class_names (list of str), resolution, channels, and
    # G_kwargs / D_kwargs (GANs) or model / model_kwargs (classifiers); written once, compared
    # with the workdir's run.json on resume (`validate.check_same_descriptor`).
    descriptor: Dict[str, Any]
    # Batch size, run length, tick length and snapshot intervals, in steps (read throughout).
    schedule: Schedule
    # The run's seed: batches are a function of (seed, step), the step key is key(seed) and
    # init_state gets fold_in(key(seed), loop.INIT_FOLD).
    seed: int
    # Training examples (int): `DataParallel.check_batch` refuses a batch larger than this.
    num_examples: int
    # The jitted step (see `StepFn`): a method, or an attribute the constructor assigns
    # (e.g. `self.train_step = make_train_step(...)`). Called once per step with the
    # arrays of `local_batch` sharded over the devices and the step options as keywords.
    train_step: StepFn

    # --- optional instance fields: the defaults fit an experiment without them ---------------
    # The sample grid (`batches.Grid`): its reals are written once to samples/reals.png, then
    # `sample`'s images every image snapshot to samples/fakes_<nimg:08d>.png. None: no grid.
    grid: Optional[Grid] = None
    # The metrics key of the score that picks best/ (e.g. 'val_acc', 'metrics/fid50k_full';
    # None: no best/), and whether lower ('min') or higher ('max') is better.
    best_key: Optional[str] = None
    best_mode: str = "min"
    # Metric names reduced by their last value in a tick instead of the mean (running values
    # such as ADA's p); see `logs.reduce_metrics`.
    last_keys: Tuple[str, ...] = ()
    # The setting to name when the batch does not fit the devices or the data (error messages).
    batch_setting: str = "config.train.batch_size"
    # What to change when a metric becomes NaN/inf (the TrainingDiverged message).
    divergence_hint: str = "lower the learning rate and resume"
    # {role: the dataset's summary dict}, e.g. {'train': ds.summary}: written to
    # data_summary.json and printed, one line per role, when the workdir is set up.
    data_summary: Mapping[str, Any] = types.MappingProxyType({})
    # How many steps ahead a background thread gathers the batches and puts them on the
    # devices (read at each tick; 0: the loop's thread does it just before each step).
    prefetch: int = 2

    def __init__(self, config: Any, workdir: pathlib.Path) -> None:
        """Load the data, build the models and set the instance fields above. Called once by
        `train` after the config and workdir checks, before the workdir is created: a setting
        that cannot work is a one-line `jaxgen.errors.UserError` raised here."""

    # --- hooks: what the loop calls, in the order it calls them -----------------------------
    def init_state(self, key: jax.Array) -> Any:
        """A fresh train state. Pure: `train` also runs it under jax.eval_shape to get the
        target a checkpoint is restored into. Required."""
        raise NotImplementedError

    def fresh_state(self, state: Any) -> Any:
        """Only for a run that starts from scratch, after `init_state`: transfer learning,
        pretrained weights. Default: the state unchanged."""
        return state

    def banner(self) -> str:
        """What the run trains, for the first line it prints (once, before the first step)."""
        return f"{self.kind}: {self.num_examples} examples, batch {self.schedule.batch_size}"

    def begin(self, step: int) -> None:
        """Called once before training from `step` (0 for a new run; e.g. to drop scores of
        steps a resumed run will redo)."""

    def step_options(self, step: int) -> Dict[str, Any]:
        """Static keyword arguments of `train_step` at `step`, chosen on the host before each step
        (hashable values; each distinct set compiles its own program), e.g. which lazy phases run."""
        return {}

    def batch(self, step: int) -> Tuple[np.ndarray, ...]:
        """The host arrays of the global batch of `step`, leading axis = batch size (override this
        or `local_batch`; called through `local_batch`)."""
        return self.local_batch(step, (0, 1))

    def local_batch(self, step: int, process: Tuple[int, int]) -> Tuple[np.ndarray, ...]:
        """The rows `batches.process_rows(B, *process)` of the global batch of `step`: what
        process `process[0]` of `process[1]` feeds (the loop calls this, on its prefetch thread,
        not `batch`). The default slices `batch(step)`; an experiment whose images are read by
        index (a streamed pack) overrides it so that a process reads only its own rows."""
        arrays = self.batch(step)
        lo, hi = process_rows(len(arrays[0]), *process)
        return tuple(a[lo:hi] for a in arrays)

    def evaluate(self, state: Any, tick: TickInfo, stats: Dict[str, float]) -> Dict[str, float]:
        """Scores of this tick (e.g. FID, validation accuracy), merged into its metrics row
        `stats` before it is logged; best/ follows `best_key` among them. Default: none."""
        return {}

    def tick_line(self, stats: Dict[str, Any]) -> str:
        """The experiment's part of the tick's progress line (losses, scores), from its row."""
        return ""

    def sample(self, state: Any) -> np.ndarray:
        """The generated images [N, R, R, C] in [-1, 1] of the grid's N cells; called every image
        snapshot when `grid` is set."""
        raise NotImplementedError

    def after_tick(self, state: Any, tick: TickInfo) -> None:
        """After the tick's row is logged and its samples saved, before its checkpoint (plots,
        histories)."""

    def finish(self, state: Any, tick: TickInfo) -> None:
        """After the last checkpoint, also when a finished run is started again (final samples)."""
