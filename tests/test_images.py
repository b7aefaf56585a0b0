"""The stand-ins image's staleness hash covers what the stand-ins run, and nothing of the client side."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from simstack import images, resources

FAKES = Path(__file__).resolve().parents[1] / "fakes"


def _installed_copy(tmp_path: Path) -> Path:
    """simstack laid out as the wheel installs it (stand-ins under simstack/fakes), in tmp_path."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(resources.PACKAGE, tmp_path / "simstack", ignore=ignore)
    shutil.copytree(FAKES, tmp_path / "simstack" / "fakes", ignore=ignore)
    return tmp_path / "simstack"


def _hash_of(root: Path) -> str:
    code = "from simstack.images import sources_hash; print(sources_hash())"
    proc = subprocess.run([sys.executable, "-c", code], cwd=root.parent, env={"PYTHONPATH": str(root.parent)},
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def _touch(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


def test_image_hash_is_the_same_for_a_checkout_and_an_installed_copy(tmp_path):
    assert _hash_of(_installed_copy(tmp_path)) == images.sources_hash()


def test_editing_client_side_modules_leaves_the_image_current(tmp_path):
    root = _installed_copy(tmp_path)
    before = _hash_of(root)
    for module in ("cli.py", "pytest_plugin/__init__.py", "stack.py", "scenarios.py", "images.py", "launchers/docker/launcher.py"):
        _touch(root / module)
    assert _hash_of(root) == before


def test_editing_a_stand_in_or_the_shared_vocabulary_marks_the_image_stale(tmp_path):
    root = _installed_copy(tmp_path)
    seen = {_hash_of(root)}
    for module in ("fakes/ws.py", "shared/faults.py", "shared/constants.py"):
        _touch(root / module)
        seen.add(_hash_of(root))
    assert len(seen) == 4, "each edit must change the hash"


def test_staged_image_files_are_exactly_the_hashed_ones(tmp_path):
    images.stage(tmp_path)
    staged = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert staged == [arc for arc, _ in images.standins_sources()]
    assert "simstack/fakes/api.py" in staged and "simstack/shared/faults.py" in staged
    assert not any(a.startswith(("simstack/cli", "simstack/pytest_plugin", "simstack/launchers")) for a in staged)
