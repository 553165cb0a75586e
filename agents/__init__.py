"""Who acts: the Principal and MesaOptimizer Mesa agents and their vectorized behaviour kernels.

Kernels (:mod:`agents.kernels`, :mod:`agents.contract`, :mod:`agents.selection`) are pure functions
on arrays; the Mesa classes hold state and call them. :mod:`agents.step_kernels` and
:mod:`agents.selection_kernels` are their compiled (Numba) row loops, run on the threads of
:mod:`agents.parallel`.
"""
