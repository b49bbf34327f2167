"""Background jobs, started detached: the hook-woken drainer and the fit of recall's weights.

Each is run as ``python -m lmm_cli.jobs.NAME STORE_DIR``, logs to ``logs/NAME.log`` in the store, never
prints, and always exits 0."""
