"""After and around runs: closed-form theory, figures and reports; reads recorded tables only."""
