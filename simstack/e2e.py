"""`simstack e2e`: run simstack's own e2e suite (tests/e2e) under repro-1011 and under fix-1011,
and show the two outcomes side by side, per test.

Each run is a plain ``pytest tests/e2e --simstack=local --simstack-scenario ...`` in a subprocess,
read back from its JUnit XML. Expected: HTTP tests pass in both runs; the WebSocket tests
(tests/e2e/test_e2e_websocket.py) fail under repro-1011 with the staging signature and pass
under fix-1011. Exit 0 only when every test came out that way.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .shared.constants import MODES, PROFILES

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "tests" / "e2e"
REPRO, FIX = "repro-1011", "fix-1011"
SIGNATURE = "received 1011 (internal error) Internal error"
WS_MODULE = "test_e2e_websocket"     # the tests that need an accepted WebSocket connection


@dataclass(frozen=True)
class Outcome:
    status: str          # passed | failed | error | skipped | missing
    message: str = ""

    @property
    def shows_1011(self) -> bool:
        return self.status == "failed" and SIGNATURE in self.message

    def __str__(self) -> str:
        return f"{self.status} (1011)" if self.shows_1011 else self.status


@dataclass(frozen=True)
class Row:
    test: str
    repro: Outcome
    fix: Outcome

    @property
    def websocket(self) -> bool:
        return self.test.startswith(WS_MODULE + "::")

    @property
    def expected(self) -> str:
        return "failed (1011) / passed" if self.websocket else "passed / passed"

    @property
    def as_expected(self) -> bool:
        repro_ok = self.repro.shows_1011 if self.websocket else self.repro.status == "passed"
        return repro_ok and self.fix.status == "passed"


def read_junit(path: Path) -> dict[str, Outcome]:
    """test id (``module::name``) -> outcome."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        test = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        status, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                status = {"failure": "failed"}.get(tag, tag)
                message = f"{el.get('message', '')}\n{el.text or ''}"
                break
        out[test] = Outcome(status, message)
    return out


def run_suite(scenario: str, junit: Path, profile: str = "staging", mode: str = "local",
              extra: list[str] | None = None) -> tuple[dict[str, Outcome], str]:
    """One pytest run of tests/e2e against a fresh stack under ``scenario``; (outcomes, output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGING_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [sys.executable, "-m", "pytest", str(SUITE), f"--simstack={mode}", "--simstack-profile", profile,
           "--simstack-scenario", scenario, "-p", "no:cacheprovider", f"--junitxml={junit}", "-q",
           "--tb=line", *(extra or [])]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outcomes = read_junit(junit) if junit.exists() else {}
    return outcomes, proc.stdout


def run_both(profile: str = "staging", mode: str = "local", workdir: Path | None = None,
             extra: list[str] | None = None) -> tuple[list[Row], dict[str, str]]:
    """Both runs; rows sorted by test, and each run's pytest output."""
    if not SUITE.is_dir():
        raise SystemExit(f"simstack e2e: the suite is not here ({SUITE}); run from a simstack checkout")
    with tempfile.TemporaryDirectory(prefix="simstack-e2e-") as tmp:
        base = Path(workdir or tmp)
        repro, repro_out = run_suite(REPRO, base / f"{REPRO}.xml", profile, mode, extra)
        fix, fix_out = run_suite(FIX, base / f"{FIX}.xml", profile, mode, extra)
    missing = Outcome("missing")
    rows = [Row(t, repro.get(t, missing), fix.get(t, missing)) for t in sorted(set(repro) | set(fix))]
    return rows, {REPRO: repro_out, FIX: fix_out}


def verdict(rows: list[Row]) -> tuple[bool, str]:
    ws = [r for r in rows if r.websocket]
    if not ws or len(ws) == len(rows):
        return False, "the suite must have both HTTP and WebSocket tests; did it run at all?"
    wrong = [r for r in rows if not r.as_expected]
    if wrong:
        return False, f"{len(wrong)} test(s) not as expected: " + ", ".join(r.test for r in wrong)
    return True, (f"as expected: {len(rows) - len(ws)} HTTP/auth tests pass in both runs; {len(ws)} WebSocket "
                  f"tests fail with 1011 under {REPRO} and pass under {FIX}")


def format_table(rows: list[Row]) -> str:
    width = max([len(r.test) for r in rows] + [4])
    lines = [f"{'test':<{width}}  {REPRO:<15} {FIX:<10} expected",
             f"{'-' * width}  {'-' * 15} {'-' * 10} {'-' * 8}"]
    for r in rows:
        lines.append(f"{r.test:<{width}}  {str(r.repro):<15} {str(r.fix):<10} "
                     f"{'ok' if r.as_expected else 'NO: expected ' + r.expected}")
    return "\n".join(lines)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of `simstack e2e` (shared by the CLI and `python -m simstack.e2e`)."""
    ap.add_argument("--profile", choices=PROFILES, default="staging")
    ap.add_argument("--mode", choices=MODES, default="local")
    ap.add_argument("--junit-dir", type=Path, help="keep the two JUnit XML files here")


def run(args: argparse.Namespace) -> int:
    if args.junit_dir:
        args.junit_dir.mkdir(parents=True, exist_ok=True)
    print(f"simstack e2e: tests/e2e against a {args.mode} stack, profile {args.profile}, under {REPRO} and {FIX}",
          flush=True)
    rows, outputs = run_both(args.profile, args.mode, args.junit_dir)
    ok, why = verdict(rows)
    print(format_table(rows))
    if not ok:
        for name, out in outputs.items():
            print(f"\n--- pytest output under {name} (last lines) ---\n" + "\n".join(out.splitlines()[-25:]))
    print(f"\n{'OK' if ok else 'UNEXPECTED'}: {why}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="simstack e2e", description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return run(ap.parse_args(argv if argv is not None else []))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
