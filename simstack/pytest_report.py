"""The pytest plugin's HTML timeline (``--simstack-report PATH``) and pytest-html extras.

The stand-ins' timeline is read after every test, incrementally, so the report keeps everything
seen up to the moment a stack stops answering, and says where that was. At the end of the session
one last read catches closes that settled after their test, and the report is written with one
entry per test holding only the traffic labelled with that test's id.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from . import report
from .shared.errors import SimstackError


class TimelineRecorder:
    """Every record a stack produced since :meth:`start`, fetched incrementally; the first failed
    fetch becomes the report's :class:`~simstack.report.Stop`."""

    def __init__(self, control):
        self.control = control
        self.versions: dict[str, int] = {}
        self.records: dict[tuple[str, int], dict] = {}
        self.stop: report.Stop | None = None

    def start(self) -> None:
        """Ignore what happened before (an attached stack's earlier traffic)."""
        try:
            _, self.versions = self.control.timeline()
        except SimstackError as exc:
            self.stop = report.Stop(time.time(), None, exc.message)

    def poll(self, where: str | None) -> None:
        if self.stop is not None or self.control is None:
            return
        try:
            records, self.versions = self.control.timeline(self.versions)
        except SimstackError as exc:
            self.stop = report.Stop(time.time(), where, exc.message)
            return
        for r in records:
            self.records[(r.get("service", ""), r["seq"])] = r

    def of(self, label: str) -> list[dict]:
        return [r for r in self.records.values() if r.get("label") == label]

    def all(self) -> list[dict]:
        return sorted(self.records.values(), key=lambda r: r["started"])


def outcome_of(rep: pytest.TestReport, current: str | None) -> str:
    """A test's outcome from its setup, call and teardown reports, as they arrive."""
    if rep.when == "call":
        if hasattr(rep, "wasxfail"):
            return "xfailed" if rep.skipped else "xpassed"
        return rep.outcome
    if rep.failed:
        return "error"
    if rep.skipped and current is None:
        return "skipped"
    return current or "passed"


def parts_dir(path: Path) -> Path:
    """Where xdist workers leave their records for the controller to merge."""
    return path.with_name(f".{path.name}.parts")


class ReportPlugin:
    """Registered by the simstack plugin when ``--simstack-report`` or pytest-html's ``--html`` is on.

    Without xdist one process records and writes. With xdist each worker records its own stack
    and leaves its records in :func:`parts_dir`; the controller, which sees every test's outcome,
    merges them and writes the report (on a shared, attached stack the controller reads it itself)."""

    def __init__(self, session, path: Path | None, html_extras: bool, worker: str | None = None):
        self.session = session          # the plugin's SimstackSession
        self.path = path
        self.html_extras = html_extras
        self.worker = worker            # xdist worker id, or None
        self.recorder = TimelineRecorder(session.faults) if session.faults is not None else None
        if self.recorder is not None:
            self.recorder.start()
        elif path is not None:          # the xdist controller: parts of an earlier, killed run go
            shutil.rmtree(parts_dir(path), ignore_errors=True)
        self.outcomes: dict[str, str] = {}
        self.written: Path | None = None
        self.problem: str | None = None
        self.stop: report.Stop | None = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        rep = yield
        if call.when == "teardown" and self.recorder is not None:
            self.recorder.poll(item.nodeid)
            if self.html_extras:
                from pytest_html import extras
                rep.extras = [*getattr(rep, "extras", []), extras.html(report.static_lanes(self.recorder.of(item.nodeid)))]
        return rep

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.outcomes[report.nodeid] = outcome_of(report, self.outcomes.get(report.nodeid))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.path is None:
            return
        if self.recorder is not None:
            self.recorder.poll(None)   # closes that settled after their test
        if self.worker is not None:
            if self.session.role != "attached":   # on a shared stack the controller reads it itself
                self._leave_part()
            return
        records, self.stop = (self.recorder.all(), self.recorder.stop) if self.recorder else self._merge_parts()
        s = self.session
        where = "one stack per xdist worker" if s.role == "controller" else f"{s.mode} stack"
        args = " ".join(session.config.invocation_params.args)
        subtitle = (f"{where}, profile {s.profile}" + (f", scenario {s.scenario}" if s.scenario else "")
                    + f" · pytest {args}")
        groups = report.by_label(records, order=list(self.outcomes), outcomes=self.outcomes, default_outcome="-")
        stop = self.stop
        if stop is not None and self.recorder is not None:   # tests run after the stack stopped: say why
            names = list(self.outcomes)
            after = names[names.index(stop.after) + 1:] if stop.after in names else []
            for g in groups:
                if g.name in after:
                    g.notes.append("the stack had stopped answering: this test's traffic was not recorded")
        try:
            self.written = report.write(self.path, groups, "simstack: pytest session timeline", subtitle=subtitle,
                                        stop=stop)
        except OSError as exc:
            self.problem = f"could not write {self.path}: {exc}"

    def _leave_part(self) -> None:
        stack = self.session.endpoints.api_control_url
        stop = self.recorder.stop
        part = {"records": [{**r, "stack": stack} for r in self.recorder.all()],
                "stop": {"at": stop.at, "after": stop.after, "why": stop.why} if stop else None}
        parts = parts_dir(self.path)
        parts.mkdir(exist_ok=True)
        (parts / f"{self.worker}.json").write_text(json.dumps(part), encoding="utf-8")

    def _merge_parts(self) -> tuple[list[dict], report.Stop | None]:
        parts = parts_dir(self.path)
        records: dict[tuple, dict] = {}
        stops = []
        for f in sorted(parts.glob("*.json")):
            part = json.loads(f.read_text(encoding="utf-8"))
            for r in part["records"]:
                records[(r["stack"], r.get("service", ""), r["seq"])] = r
            if part["stop"]:
                stops.append(report.Stop(**part["stop"]))
        shutil.rmtree(parts, ignore_errors=True)
        return sorted(records.values(), key=lambda r: r["started"]), min(stops, key=lambda st: st.at, default=None)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.written:
            terminalreporter.line(f"simstack report: {self.written.resolve()}")
        elif self.problem:
            terminalreporter.line(f"simstack report: {self.problem}", red=True)
        if self.stop:
            terminalreporter.line(f"simstack report: the stack stopped answering"
                                  f"{' after ' + self.stop.after if self.stop.after else ''}: {self.stop.why}", red=True)
