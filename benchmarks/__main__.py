"""``python -m benchmarks``: run the speed suite and write BENCHMARKS.md (see benchmarks.suite)."""

from benchmarks.suite import main

raise SystemExit(main())
