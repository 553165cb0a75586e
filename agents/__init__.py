"""Who acts: the Principal and MesaOptimizer Mesa agents and their vectorized behaviour kernels.

Kernels (:mod:`agents.response`, :mod:`agents.contract`, :mod:`agents.sandbox`) are pure functions
on arrays; the Mesa classes hold state and call them. :mod:`agents.response_jit` and
:mod:`agents.sandbox_jit` are their compiled (Numba) row loops, run on the threads of
:mod:`model.parallel`.
"""
