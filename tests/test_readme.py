"""The README's fault catalogue is the one the code declares."""
from pathlib import Path

from simstack.cli import fault_catalogue_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_fault_catalogue_matches_the_declared_kinds():
    text = README.read_text()
    start = text.index("<!-- fault-catalogue")
    start = text.index("\n", start) + 1
    end = text.index("<!-- /fault-catalogue -->")
    assert text[start:end].strip() == fault_catalogue_markdown().strip(), \
        "regenerate with `simstack fault kinds --markdown`"


def test_readme_shows_both_commands():
    text = README.read_text()
    assert "make repro-1011" in text and "make test" in text
