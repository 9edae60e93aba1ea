"""Shared pytest set-up: fixture paths, a CPU-only JAX and one XLA compilation cache."""
import os
import pathlib
import shutil
import tempfile

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA:CPU's newer fusion emitters compile ~30% slower here (the tiny GAN's train step: 29 s ->
# 21 s with most optimisation off, 60 s -> 52 s optimised; its results agree to float32
# round-off, 2e-7 on weights of ~300). The suite is compile-bound, so it uses the older
# emitters; every process it starts inherits this (tests that add XLA flags append theirs).
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_use_fusion_emitters=false".strip()
# No TensorBoard writer (metrics.jsonl only) unless a test asks for one: each writer
# imports TensorFlow, ~10 s of CPU in every train.py subprocess and test worker.
# tests/stylegan2/test_train.py turns it on for the run that checks the event file.
os.environ.setdefault("JAXGEN_TENSORBOARD", "0")

REPO = pathlib.Path(__file__).resolve().parents[1]

# Most of the suite's time is XLA compilation, and many tests compile the same
# programs (the same networks, train steps and feature extractors, in this process
# and in the train.py subprocesses). One persistent compilation cache per test
# session, set before JAX is imported, lets every later compilation of a program
# load the executable instead (the cached executable is the one a fresh compile
# would build). JAXGEN_TEST_JAX_CACHE names a directory to keep it across sessions.
_OWN_JAX_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _dir = os.environ.get("JAXGEN_TEST_JAX_CACHE")
    if not _dir:
        _dir = _OWN_JAX_CACHE = tempfile.mkdtemp(prefix="jaxgen-test-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _dir
JAX_CACHE = pathlib.Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
os.environ["JAXGEN_JAX_CACHE"] = str(JAX_CACHE)  # commands run in-process (main([...])) use it too

# Only now JAX (tiny_gan imports it): JAX reads JAX_PLATFORMS and JAX_COMPILATION_CACHE_DIR at
# import, so importing it above left this process's compilations uncached.
import tiny_gan  # noqa: E402,F401
from log_lines import log_lines  # noqa: E402,F401 - the fixture, for every test


# The longest modules first (CI durations, 2026-12-02). `make test` runs `-n 2 --dist
# loadfile`: xdist hands whole modules to the two workers in collection order, so a long
# module collected late (tests/workflows sorts last) ran alone at the end while the other
# worker idled. Longest-first keeps both busy; the rest keep their collection order.
SLOW_FIRST = ("stylegan2/test_train.py", "workflows/test_pipeline.py", "metrics/test_evaluate.py",
              "classifiers/test_classifier_models.py", "harness/test_multiprocess.py",
              "evolve/test_evolve.py", "classifiers/test_classifier_train.py", "stylegan2/test_precision.py",
              "stylegan2/test_parity.py", "stylegan2/test_accumulation.py", "classifiers/test_utility.py",
              "harness/test_preemption.py", "workflows/test_labelled.py", "workflows/test_demo.py")


def pytest_collection_modifyitems(config, items):
    rank = {m: i for i, m in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0].replace("tests/", "", 1), len(rank)))


def pytest_unconfigure(config):
    if _OWN_JAX_CACHE:
        shutil.rmtree(_OWN_JAX_CACHE, ignore_errors=True)


def _fixtures_dir() -> pathlib.Path:
    env = os.environ.get("JAXGEN_FIXTURES")
    if env:
        return pathlib.Path(env)
    return REPO.parent / "shared" / "fixtures"


FIXTURES = _fixtures_dir()


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    """Directory with NVIDIA/pytorch-fid golden files (see its FORMAT.md)."""
    if not (FIXTURES / "FORMAT.md").exists():
        pytest.fail(
            f"golden fixtures not found at {FIXTURES}; set JAXGEN_FIXTURES to the "
            "shared/fixtures directory")
    return FIXTURES


@pytest.fixture(scope="session")
def jax_cache_dir() -> pathlib.Path:
    """The session's XLA compilation cache: pass it to train.py runs as JAXGEN_JAX_CACHE."""
    return JAX_CACHE


@pytest.fixture(scope="module", autouse=True)
def _xla_fast_compile(request):
    """Modules with `XLA_FAST_COMPILE = True` compile with most XLA optimisation off.

    Their time is mostly compiling small networks and their checks compare values
    computed in the same process (shapes, logic, resume, hand-written formulas), not
    golden files; the golden-parity modules of the forward networks (NVIDIA's G and D,
    Keras, pytorch-fid) keep the optimised build that users run, and the loss parity
    (NVIDIA's gradients, slow to compile) is the one golden module that opts in.
    Module scope and autouse: it is on before the module's own fixtures build anything.
    """
    if getattr(request.module, "XLA_FAST_COMPILE", False) is not True:
        yield
        return
    with tiny_gan.fast_compile():
        yield
