"""After and around runs: closed-form theory, sweeps, statistics, figures, reports and the app.

Figures and reports read recorded tables (:mod:`analysis.run_folder`), never a live model; sweeps
run models through the command-line's own path (:func:`model.runner.run_simulation`), and the
app drives a model it builds itself.
"""
