"""The refactor oracle: every shipped scenario's tables, and one sweep's, match the recorded hashes.

The hashes in ``tests/golden_hashes.json`` were recorded from the code before the architecture
refactor (see :mod:`tests.golden`). A change that alters results on purpose re-records them in
the same commit (``OPENBLAS_CORETYPE=Haswell python -m tests.golden --write``) and says why in its
message. The hashes hold for OpenBLAS's Haswell kernels (:data:`tests.golden.BLAS_CORETYPE`), so
the test computes them in a subprocess that runs those kernels, whatever this machine's CPU.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.golden import BLAS_CORETYPE, HASHES, ROOT

PROBE = (
    "import json; from tests.golden import blas_architectures;"
    "print(json.dumps(sorted(map(str, blas_architectures()))))"
)


def _run(*args: str) -> str:
    env = {**os.environ, "OPENBLAS_CORETYPE": BLAS_CORETYPE}
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, check=True
    )
    return done.stdout


def test_tables_are_bit_identical_to_the_recorded_hashes():
    kernels = json.loads(_run("-c", PROBE))
    if kernels != [BLAS_CORETYPE]:
        pytest.skip(f"OpenBLAS cannot run its {BLAS_CORETYPE} kernels here (runs {kernels})")
    expected = json.loads(HASHES.read_text())
    actual = json.loads(_run("-m", "tests.golden"))
    assert sorted(actual) == sorted(expected)
    changed = [key for key in expected if actual[key] != expected[key]]
    assert not changed, f"tables changed: {changed}"


VARIANT_PROBE = """
import json, sys, tempfile
from pathlib import Path
import pandas as pd
from mesaopt import load_scenario, run_simulation
from tests.golden import ROOT, VARIANTS, blas_architectures, frame_hash
name, overrides = VARIANTS["baseline+threads_9000"]
path = ROOT / "scenarios" / f"{name}.toml"
with tempfile.TemporaryDirectory() as tmp:
    run_simulation(load_scenario(path, overrides), Path(tmp) / "run", base_dir=path.parent,
                   progress=False)
    steps = frame_hash(pd.read_parquet(Path(tmp) / "run" / "steps.parquet"))
print(json.dumps([sorted(map(str, blas_architectures())), steps]))
"""


@pytest.mark.parametrize("coretype", ["SkylakeX"])
def test_the_planner_columns_do_not_depend_on_the_blas_kernel(coretype):
    """The 9,000-agent baseline's steps (planner welfare included) under another CPU's kernels.

    Before the planner's spectral bracket summed its dot products with NumPy's pairwise add, the
    SkylakeX kernels changed ``welfare_planner`` of this table in the last bit.
    """

    def run(kernel: str) -> tuple[list[str], str]:
        env = {**os.environ, "OPENBLAS_CORETYPE": kernel}
        done = subprocess.run(
            [sys.executable, "-c", VARIANT_PROBE],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        if done.returncode == -signal.SIGILL:  # OpenBLAS forced onto kernels this CPU lacks
            pytest.skip(f"this CPU cannot run OpenBLAS's {kernel} kernels (SIGILL)")
        assert done.returncode == 0, done.stderr
        kernels, digest = json.loads(done.stdout)
        return kernels, digest

    kernels, digest = run(coretype)
    if kernels != [coretype]:
        pytest.skip(f"this CPU cannot run OpenBLAS's {coretype} kernels (runs {kernels})")
    reference_kernels, reference = run(BLAS_CORETYPE)
    assert reference_kernels == [BLAS_CORETYPE]
    assert digest == reference
    assert reference == json.loads(HASHES.read_text())["baseline+threads_9000/steps"]
