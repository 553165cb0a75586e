"""The mesaopt speed suite: single-run throughput, build time and memory, against idiomatic Mesa.

Run it with ``python -m benchmarks`` (``--quick`` for a smoke test). Every measurement runs in a
fresh subprocess (:mod:`benchmarks.worker`) so that peak RSS is the configuration's own; the
orchestration and the ``BENCHMARKS.md`` writer live in :mod:`benchmarks.suite`, and the
idiomatic-Mesa reference model the ratios are measured against in :mod:`benchmarks.reference`.
Benchmarks are not tests: nothing here asserts a timing.
"""
