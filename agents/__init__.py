"""Who acts: the Principal and MesaOptimizer Mesa agents and their vectorized behaviour kernels.

Kernels (:mod:`agents.kernels`, :mod:`agents.contract`, :mod:`agents.selection`) are pure functions
on arrays; the Mesa classes hold state and call them.
"""
