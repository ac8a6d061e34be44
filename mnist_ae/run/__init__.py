"""The run lifecycle, written once for single runs and sweeps: set-up, programs, the driver, hooks."""
