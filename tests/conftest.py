"""Shared pytest set-up: fixture paths and a CPU-only JAX."""
import os
import pathlib

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = pathlib.Path(__file__).resolve().parents[1]


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
