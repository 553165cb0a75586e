"""The refactor oracle: every shipped scenario's tables, and one sweep's, match the recorded hashes.

The hashes in ``tests/golden_hashes.json`` were recorded from the code before the architecture
refactor (see :mod:`tests.golden`). A change that alters results on purpose re-records them in
the same commit (``OPENBLAS_CORETYPE=Haswell python -m tests.golden --write``) and says why in its
message. The hashes hold for OpenBLAS's Haswell kernels (:data:`tests.golden.BLAS_CORETYPE`), so
the test computes them in a subprocess that runs those kernels, whatever this machine's CPU.
"""

import json
import os
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
