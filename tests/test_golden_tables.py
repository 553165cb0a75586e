"""The refactor oracle: every shipped scenario's tables, and one sweep's, match the recorded hashes.

The hashes in ``tests/golden_hashes.json`` were recorded from the code before the architecture
refactor (see :mod:`tests.golden`). A change that alters results on purpose re-records them in
the same commit (``python -m tests.golden --write``) and says why in its message.
"""

import json

from tests.golden import HASHES, compute_hashes


def test_tables_are_bit_identical_to_the_recorded_hashes():
    expected = json.loads(HASHES.read_text())
    actual = compute_hashes()
    assert sorted(actual) == sorted(expected)
    changed = [key for key in expected if actual[key] != expected[key]]
    assert not changed, f"tables changed: {changed}"
