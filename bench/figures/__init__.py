"""One module per figure; importing them fills :data:`bench.harness.FIGURES` in report order."""
from . import startup, repro, traffic, capacity, fault_switch, redirect, gateway, report, cassette, fault_rm, reap  # noqa: F401  (registration)
