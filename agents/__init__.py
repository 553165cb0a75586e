"""Who acts: principals, the mesa-optimizer kinds, and the kernels of their behaviour.

:mod:`agents.principal` (the principal as a Mesa agent: beliefs, training signal, contract),
:mod:`agents.population` (every mesa-optimizer's state as arrays), :mod:`agents.optimizer` (the
Mesa view of one of them), :mod:`agents.kinds` (the registry of mesa-optimizer kinds),
:mod:`agents.sandbox` (best-of-n selection in the principal's sandbox), :mod:`agents.contract`
(the LEN contract) and :mod:`agents.response` (how an agent responds to its reward). Kernels are
pure functions on arrays; :mod:`agents.response_jit` and :mod:`agents.sandbox_jit` are the
compiled (Numba) row loops, run on the threads of :mod:`model.parallel`.
"""
