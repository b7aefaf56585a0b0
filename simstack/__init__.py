"""simstack: a locally simulated staging stack for offline reproduction.

    from simstack import Stack
    with Stack(mode="local", profile="fast") as stack:
        stack.faults.add("race_on_accept")
"""
from .endpoints import Endpoints
from .errors import ConfigError, NoDockerEngine, NotRunning, PortInUse, SimstackError, StartError
from .faults import KINDS, Fault
from .scenarios import load_scenario, run_scenario
from .stack import FaultControl, Stack
from .triggers import Trigger

__all__ = ["Stack", "FaultControl", "Endpoints", "Fault", "KINDS", "Trigger", "load_scenario", "run_scenario",
           "SimstackError", "ConfigError", "StartError", "PortInUse", "NoDockerEngine", "NotRunning"]
