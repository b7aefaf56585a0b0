"""simstack: a locally simulated staging stack for offline reproduction.

    from simstack import Stack
    with Stack(mode="local", profile="fast") as stack:
        stack.faults.add("race_on_accept")

Public names are re-exported here, loaded on first use: the stand-ins import
``simstack.shared`` and should not pay for the client side at start-up.
"""
from importlib import import_module

_EXPORTS = {
    "Stack": "stack", "FaultControl": "fault_control", "Endpoints": "endpoints", "Fault": "shared.faults",
    "KINDS": "shared.faults", "Trigger": "shared.triggers", "load_scenario": "scenarios", "run_scenario": "scenarios",
    "SimstackError": "shared.errors", "ConfigError": "shared.errors", "StartError": "shared.errors",
    "PortInUse": "shared.errors", "NoDockerEngine": "shared.errors", "NotRunning": "shared.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'simstack' has no attribute {name!r}")
