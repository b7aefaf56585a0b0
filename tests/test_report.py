"""The HTML timeline: built from real runs (the repro, a pytest session), bounded in size, and
checked in a real browser (Debian's chromium driven by Playwright) where one can be had."""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simstack import report, repro
from simstack.report import data_in
from simstack.shared.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "test-output"
FAST = ["--simstack=local", "--simstack-profile", "fast"]
HTML_FRAME = '<img src=x onerror="document.title=\'pwned\'"><script>window.pwned=1</script>'

SUITE = '''
import json, httpx, os, pytest
from websockets.asyncio.client import connect

def headers(simstack):
    return {"Authorization": f"Bearer {simstack.token}"}

def test_health(simstack):
    assert httpx.get(simstack.endpoints.api_url + "/health", timeout=5).status_code == 200

async def test_agent_run(simstack):
    async with connect(simstack.endpoints.ws_url, additional_headers=headers(simstack), proxy=None) as ws:
        await ws.send(json.dumps({"type": "start_agent", "payload": {"user_request": "Analyze my costs"}}))
        while json.loads(await ws.recv())["type"] != "agent_completed":
            pass

async def test_html_in_a_frame(simstack):
    async with connect(simstack.endpoints.ws_url, additional_headers=headers(simstack), proxy=None) as ws:
        await ws.send(os.environ["HTML_FRAME"])
        while json.loads(await ws.recv())["type"] != "error":
            pass

@pytest.mark.simstack_faults("race_on_accept")
async def test_race_gives_1011(simstack):
    async with connect(simstack.endpoints.ws_url, additional_headers=headers(simstack), proxy=None) as ws:
        await ws.recv()

def test_without_traffic():
    pass
'''

KILLS_THE_STACK = '''
import httpx

def test_before(simstack):
    assert httpx.get(simstack.endpoints.api_url + "/health", timeout=5).status_code == 200

def test_kills_the_api_standin(simstack):
    proc = simstack.stack.launcher.procs["api"]
    proc.kill()
    proc.wait()

def test_after(simstack):
    pass
'''


def lanes(data: dict, group: str) -> list[dict]:
    return next(g for g in data["groups"] if g["name"] == group)["lanes"]


def pytest_session(tmp: Path, source: str, *args: str) -> subprocess.CompletedProcess:
    (tmp / "test_suite.py").write_text(source)
    env = {**os.environ, "HTML_FRAME": HTML_FRAME, "NO_PROXY": "127.0.0.1,localhost,::1", "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
                           "-o", "asyncio_default_fixture_loop_scope=function", *FAST, *args, "test_suite.py"],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=180)


# ------------------------------------------------------------------ real runs

@pytest.fixture(scope="module")
def repro_report(tmp_path_factory) -> tuple[Path, list[str]]:
    """`simstack repro 1011 --html` as a user runs it (a subprocess: the browser's event loop stays apart)."""
    tmp = tmp_path_factory.mktemp("repro")
    path = tmp / "repro.html"
    proc = subprocess.run([sys.executable, "-m", "simstack.cli", "repro", "1011", "--profile", "fast", "--html", str(path)],
                          env={**os.environ, "SIMSTACK_STATE_DIR": str(tmp / "state"), "NO_PROXY": "127.0.0.1,localhost,::1"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path, proc.stdout.splitlines()


@pytest.fixture(scope="module")
def session_report(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("session")
    proc = pytest_session(tmp, SUITE, "--simstack-report", "report.html", "--html", "pytest-html.html")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]   # only the race test fails
    return tmp / "report.html", tmp / "pytest-html.html", proc


def test_repro_report_has_the_three_phases_with_1011_1000_1011(repro_report):
    path, lines = repro_report
    data = data_in(path.read_text())
    assert [g["name"] for g in data["groups"]] == [p.title for p in repro.REPROS["1011"]]
    closes = [[ln["cc"] for ln in g["lanes"] if ln["k"] == "ws"] for g in data["groups"]]
    assert closes == [[1011], [1000], [1011]]
    race, fixed, setup = ([ln for ln in g["lanes"] if ln["k"] == "ws"][0] for g in data["groups"])
    assert race["n_out"] == 0 and race["err"].startswith("NotRegistered") and race["by"] == "server"
    assert fixed["n_out"] >= 8 and fixed["by"] == "client"
    assert setup["n_out"] == 0 and setup["err"].startswith("ValueError: setup_error")
    assert [g["summary"]["events"] for g in data["groups"]] == [0, 5, 0]
    assert f"HTML timeline: {path}" in "\n".join(lines)


def test_repro_output_fits_in_100_columns_and_keeps_the_server_error(repro_report):
    path, lines = repro_report
    text = "\n".join(lines).splitlines()
    assert max(len(line) for line in text) <= 100
    header = next(i for i, line in enumerate(text) if "race_on_accept (bug)" in line and "fixed (fix deployed)" in line)
    starts = [text[header].index(p.title.split()[0]) for p in repro.REPROS["1011"]]
    row = next(i for i in range(header, len(text)) if text[i].startswith("server error"))
    block = [text[row], *itertools.takewhile(lambda line: not line[:starts[0]].strip(), text[row + 1:])]
    servers = [ln for g in data_in(path.read_text())["groups"] for ln in g["lanes"] if ln["k"] == "ws"]
    for col, lane in ((0, servers[0]), (2, servers[2])):
        end = starts[col + 1] if col + 1 < len(starts) else None
        cell = " ".join(line[starts[col]:end].strip() for line in block if line[starts[col]:end].strip())
        assert cell == lane["err"], "the server error, whole, in its column"


def test_session_report_has_one_entry_per_test_with_only_its_traffic(session_report):
    path, _, proc = session_report
    data = data_in(path.read_text())
    by_name = {g["name"]: g for g in data["groups"]}
    prefix = "test_suite.py::"
    assert [n for n in by_name if n.startswith(prefix)] == [prefix + t for t in (
        "test_health", "test_agent_run", "test_html_in_a_frame", "test_race_gives_1011", "test_without_traffic")]
    for name, g in by_name.items():
        if name.startswith(prefix):
            assert all(ln["label"] == name for ln in g["lanes"]), name
    health, run, race, idle = (by_name[prefix + t] for t in (
        "test_health", "test_agent_run", "test_race_gives_1011", "test_without_traffic"))
    assert [(ln["k"], ln["p"], ln["st"]) for ln in health["lanes"]] == [("http", "/health", 200)]
    assert [ln["cc"] for ln in run["lanes"]] == [1000] and run["summary"]["events"] == 5
    assert [ln["cc"] for ln in race["lanes"]] == [1011] and race["outcome"] == "failed"
    assert race["summary"]["faults"] and race["lanes"][0]["err"].startswith("NotRegistered")
    assert idle["lanes"] == [] and idle["outcome"] == "passed"
    assert f"simstack report: {path}" in proc.stdout


def test_plugin_summary_fits_in_100_columns(session_report):
    _, _, proc = session_report
    # simstack's section only: pytest's own short summary that follows is not wrapped when CI is set
    lines = proc.stdout[proc.stdout.index("simstack traffic"):].splitlines()
    section = "\n".join(itertools.takewhile(lambda line: not line.startswith("="), lines[1:]))
    assert section.strip() and max(len(line) for line in section.splitlines()) <= 100
    assert "test_suite.py::test_race_gives_1011" in section.replace("\n        ", "")


def test_pytest_html_shows_each_tests_lanes(session_report):
    _, pytest_html, _ = session_report
    page = pytest_html.read_text()
    assert page.count("simstack-lanes") >= 5, "one lanes table per test"
    assert "NotRegistered: connection conn_" in page and "close 1011 Internal error by server" in page


def test_with_xdist_each_worker_s_traffic_lands_in_one_report(tmp_path):
    proc = pytest_session(tmp_path, SUITE, "--simstack-report", "report.html", "-n", "2")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = data_in((tmp_path / "report.html").read_text())
    by_name = {g["name"]: g for g in data["groups"]}
    prefix = "test_suite.py::"
    assert {n for n in by_name if n.startswith(prefix)} == {prefix + t for t in (
        "test_health", "test_agent_run", "test_html_in_a_frame", "test_race_gives_1011", "test_without_traffic")}
    assert [ln["cc"] for ln in by_name[prefix + "test_race_gives_1011"]["lanes"]] == [1011]
    assert [ln["cc"] for ln in by_name[prefix + "test_agent_run"]["lanes"]] == [1000]
    assert by_name[prefix + "test_race_gives_1011"]["outcome"] == "failed"
    assert "one stack per xdist worker" in data["subtitle"]
    assert not list(tmp_path.glob(".report.html.parts*")), "the workers' parts are merged and removed"
    assert f"simstack report: {tmp_path / 'report.html'}" in proc.stdout


def test_a_stack_that_dies_mid_run_keeps_what_was_seen_and_marks_where(tmp_path):
    proc = pytest_session(tmp_path, KILLS_THE_STACK, "--simstack-report", "report.html")
    data = data_in((tmp_path / "report.html").read_text())
    assert data["stop"] and data["stop"]["after"] == "test_suite.py::test_kills_the_api_standin", proc.stdout[-2000:]
    assert [ln["p"] for ln in lanes(data, "test_suite.py::test_before")] == ["/health"]
    after = next(g for g in data["groups"] if g["name"] == "test_suite.py::test_after")
    assert any("stopped answering" in n for n in after["notes"])
    assert "the stack stopped answering after test_suite.py::test_kills_the_api_standin" in proc.stdout


@pytest.mark.parametrize("where, says", [
    ("missing-dir/report.html", "does not exist"),
    (".", "is a directory"),
    ("/proc/simstack-report.html", "cannot write there"),
])
def test_bad_report_path_is_refused_before_the_run(tmp_path, where, says):
    proc = pytest_session(tmp_path, "def test_x(simstack):\n    raise AssertionError('the test ran')\n",
                          "--simstack-report", where)
    assert proc.returncode == 4, proc.stdout + proc.stderr   # usage error: nothing ran
    assert says in proc.stderr and repr(where) in proc.stderr and "the test ran" not in proc.stdout + proc.stderr
    with pytest.raises(ConfigError, match=says):
        report.check_path(tmp_path / where if not where.startswith("/") else where, "--html")


def test_cli_refuses_a_bad_html_path_before_starting_a_stack(tmp_path):
    env = {**os.environ, "SIMSTACK_STATE_DIR": str(tmp_path / "state")}
    for argv in (["repro", "1011", "--html", "nowhere/r.html"], ["scenario", "run", "fix-1011", "--html", "nowhere/r.html"],
                 ["report", "--out", "nowhere/r.html"]):
        proc = subprocess.run([sys.executable, "-m", "simstack.cli", *argv], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and "directory 'nowhere' does not exist" in proc.stderr, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr and "simstack repro 1011:" not in proc.stdout


# ------------------------------------------------------------------ bounded size, escaping, empty runs

def test_1000_connections_make_a_report_under_2mb(tmp_path):
    from bench.figures.report import synthetic_records
    records, tests = synthetic_records(1000)
    assert sum(r["kind"] == "ws" for r in records) == 1000
    started = time.perf_counter()
    path = report.write(tmp_path / "big.html", report.by_label(records, order=tests), "1000")
    took = time.perf_counter() - started
    size = path.stat().st_size
    print(f"report of 1,000 connections: {size:,} bytes in {took:.3f} s")   # time: bench's report_1000_s
    assert size < 2_000_000
    data = data_in(path.read_text())
    assert sum(ln["k"] == "ws" for g in data["groups"] for ln in g["lanes"]) == 1000


def test_frames_past_the_lane_limit_are_summarised_and_said(tmp_path):
    from bench.figures.report import synthetic_records
    records, _ = synthetic_records(1)
    rec = records[0] if records[0]["kind"] == "ws" else records[1]
    rec["frames"] = [[i * 10.0, "out", "pong", '{"type": "pong"}'] for i in range(300)]
    rec["frames_out"], rec["frames_in"] = ["pong"] * 300, []
    lane = data_in(report.render([report.Group("t", "passed", [rec])], "t"))["groups"][0]["lanes"][0]
    assert len(lane["fr"]) == report.FRAMES_PER_LANE
    assert lane["summarised"] == {"out pong": 300 - report.FRAMES_PER_LANE} and lane["n_out"] == 300


def test_frame_contents_are_data_never_markup():
    rec = {"kind": "ws", "seq": 1, "started": 1.0, "status": 101, "label": "</script><script>alert(1)</script>",
           "frames": [[1.0, "in", "<invalid>", HTML_FRAME + "</script><!--"]], "frames_in": ["<invalid>"],
           "frames_out": [], "states": [], "faults": [], "error": "<b>bold</b>"}
    html = report.render([report.Group("<i>t</i>", "passed", [rec])], "<title>")
    body = html[html.index("<body>"):]
    assert "<script>alert" not in body and "<img" not in body and "<b>bold" not in body and "<i>t" not in body
    assert data_in(html)["groups"][0]["lanes"][0]["fr"][0][3].startswith(HTML_FRAME)


# ------------------------------------------------------------------ in a real browser

@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (`make browser` installs it where it can)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"Playwright for Python is not installed ({exc}); `make setup` installs it")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
        yield b
        b.close()


class Page:
    """A report opened from file:// with every console message, page error and request recorded."""

    def __init__(self, browser, path: Path):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.console, self.requests = [], []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        out = SCREENSHOTS / name
        self.page.screenshot(path=str(out), full_page=True)
        print(f"screenshot: {out}")
        return out


def test_repro_report_in_the_browser_loads_clean_with_a_lane_per_connection(browser, repro_report):
    p = Page(browser, repro_report[0])
    assert p.console == [] and p.requests == [p.url], (p.console, p.requests)
    ws = p.page.locator(".lane.ws")
    assert ws.count() == 3
    assert [ws.nth(i).get_attribute("data-close") for i in range(3)] == ["1011", "1000", "1011"]
    assert "closed 1011 \"Internal error\" by server" in ws.nth(0).inner_text()
    assert "server error: NotRegistered" in ws.nth(0).inner_text()
    assert p.screenshot("repro-report.png").stat().st_size > 10_000


def test_filter_click_hides_the_passed_tests(browser, session_report):
    p = Page(browser, session_report[0])
    assert p.console == [] and p.requests == [p.url], (p.console, p.requests)
    groups = p.page.locator("section.group")
    passed = p.page.locator('section.group[data-outcome="passed"]')
    assert passed.count() == 4 and passed.first.is_visible()
    p.page.click('button.chip[data-outcome="passed"]')
    assert all(not passed.nth(i).is_visible() for i in range(passed.count()))
    visible = [groups.nth(i).get_attribute("data-name") for i in range(groups.count()) if groups.nth(i).is_visible()]
    assert visible == ["test_suite.py::test_race_gives_1011"]
    assert not p.page.locator('#summary tr[data-outcome="passed"]').first.is_visible()
    p.screenshot("session-report-failed-only.png")


def test_html_in_a_frame_is_shown_as_text_in_the_browser(browser, session_report):
    p = Page(browser, session_report[0])
    lane = p.page.locator('section.group[data-name="test_suite.py::test_html_in_a_frame"] .lane.ws')
    lane.locator(".m.in").first.click()
    assert HTML_FRAME in lane.locator(".detail").inner_text()
    assert p.page.evaluate("window.pwned") is None and p.page.title() != "pwned"
    assert p.page.locator("img").count() == 0 and p.console == []


def test_a_report_without_traffic_says_so_in_the_browser(browser, tmp_path):
    path = report.write(tmp_path / "empty.html", [report.Group("test_a.py::test_x", "passed")], "empty")
    p = Page(browser, path)
    assert "No traffic at all" in p.page.locator("#no-traffic").inner_text()
    assert "No traffic" in p.page.locator("section.group").inner_text() and p.console == []


def test_1000_connections_render_in_the_browser(browser, tmp_path):
    from bench.figures.report import synthetic_records
    records, tests = synthetic_records(1000)
    p = Page(browser, report.write(tmp_path / "big.html", report.by_label(records, order=tests), "1000"))
    assert p.page.locator(".lane.ws").count() == 1000 and p.console == []
    assert p.page.locator('.lane.ws[data-close="1011"]').count() == 100
