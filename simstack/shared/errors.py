"""Errors a user can act on: what was wrong, with what value, and what to do."""


class SimstackError(Exception):
    """Base error. ``hint`` says what to do about it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  -> {self.hint}" if self.hint else self.message


class ConfigError(SimstackError):
    """A bad fault, scenario or option, rejected before anything was applied."""


class StartError(SimstackError):
    """The stack could not be started; nothing it started is left running."""


class PortInUse(StartError):
    def __init__(self, host: str, port: int, option: str):
        super().__init__(
            f"port {port} on {host} is already in use",
            f"free it, or pick another port with {option} (0 picks a free one)",
        )
        self.port = port


class NoDockerEngine(StartError):
    def __init__(self, detail: str):
        super().__init__(
            f"no Docker engine answers ({detail})",
            "start a Docker engine (in a checkout, `make engine` installs and starts one on this machine), "
            "or use --mode local (same stand-ins and Toxiproxy as processes)",
        )


class NotRunning(SimstackError):
    def __init__(self, what: str = "no simstack stack is running"):
        super().__init__(what, "start one with `simstack up --detach`")
