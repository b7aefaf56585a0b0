"""simstack as a team installs it: the built wheel in a fresh virtualenv, run outside any checkout.

One module-scoped virtualenv (pip reuses the wheels it has cached); every test runs the installed
``simstack`` with the working directory and the state in a temporary directory, never the checkout.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from simstack.launchers.local import find_toxiproxy
from simstack.scenarios import SCENARIO_DIR

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """``python -m build`` (sdist, then the wheel from the sdist) and the wheel installed into a new venv."""
    base = tmp_path_factory.mktemp("wheel")
    source, dist, venv, work = base / "source", base / "dist", base / "venv", base / "work"
    work.mkdir()
    # Built from a copy, so the build's own files (egg-info) never land in the checkout.
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "bin", "build", "dist", "*.egg-info", "__pycache__", ".build", ".cache"))
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
                   check=True, capture_output=True)
    wheels, sdists = sorted(dist.glob("simstack-*.whl")), sorted(dist.glob("simstack-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in dist.iterdir())
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # The host's pip installs into the new interpreter (no ensurepip); pytest for the plugin check.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-compile",
                    "--disable-pip-version-check", str(wheels[0]), "pytest"], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "SIMSTACK_"))}
    env.update(SIMSTACK_STATE_DIR=str(base / "state"), SIMSTACK_TOXIPROXY_BIN=find_toxiproxy(),
               NO_PROXY="127.0.0.1,localhost,::1", no_proxy="127.0.0.1,localhost,::1")
    return {"venv": venv, "work": work, "env": env}


def run(installed: dict, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed["venv"] / "bin" / argv[0]), *argv[1:]], cwd=installed["work"],
                          env=installed["env"], capture_output=True, text=True, timeout=timeout)


def test_installed_package_puts_nothing_generic_at_the_top_of_site_packages(installed):
    proc = run(installed, "python", "-c", "import simstack.fakes.api, fakes")
    assert "ModuleNotFoundError: No module named 'fakes'" in proc.stderr, proc.stderr
    proc = run(installed, "python", "-c", "import simstack, pathlib; print(simstack.__file__)")
    assert not Path(proc.stdout.strip()).is_relative_to(ROOT), proc.stdout


def test_installed_package_lists_every_shipped_scenario_and_a_users_own(installed, tmp_path):
    (tmp_path / "ours.yaml").write_text("name: ours\ndescription: a team's own scenario\n")
    proc = run(installed, "simstack", "scenario", "ls", "--scenarios", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.splitlines() if line[:1].strip()]   # not the wrapped lines
    assert listed == sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")) + ["ours"]


def test_installed_package_reproduces_1011(installed):
    proc = run(installed, "simstack", "repro", "1011", "--profile", "fast")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "REPRODUCED 1011" in proc.stdout and "FIXED" in proc.stdout


def test_installed_pytest_plugin_starts_a_stack(installed):
    (installed["work"] / "test_health.py").write_text(textwrap.dedent("""
        import httpx

        def test_health(simstack):
            assert httpx.get(simstack.endpoints.api_url + "/health", trust_env=False).status_code == 200
    """))
    proc = run(installed, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--simstack=local",
               "--simstack-profile=fast", "test_health.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_installed_package_says_how_to_get_toxiproxy_and_builds_it(installed, tmp_path):
    env = {**installed["env"], "PATH": "/usr/bin:/bin"}
    del env["SIMSTACK_TOXIPROXY_BIN"]
    proc = subprocess.run([str(installed["venv"] / "bin" / "simstack"), "up"], cwd=installed["work"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "toxiproxy-server v2.12.0) was not found" in proc.stderr and "`simstack install-toxiproxy`" in proc.stderr
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain here: `simstack install-toxiproxy` needs one (make setup installs Toxiproxy with it)")
    env["PATH"] = f"{os.path.dirname(go)}:/usr/bin:/bin"
    proc = subprocess.run([str(installed["venv"] / "bin" / "simstack"), "install-toxiproxy", "--bin-dir", str(tmp_path)],
                          cwd=installed["work"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    version = subprocess.run([str(tmp_path / "toxiproxy-server"), "-version"], capture_output=True, text=True)
    assert "2.12.0" in version.stdout + version.stderr
