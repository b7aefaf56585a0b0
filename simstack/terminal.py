"""Terminal output that fits: lines wrap at 100 columns (or a narrower terminal) instead of
running off the screen, with a hanging indent, and nothing is ever cut."""
from __future__ import annotations

import shutil
import textwrap

WIDTH = 100


def width() -> int:
    """100 columns, or the terminal's width when it is narrower."""
    return max(40, min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns))


def fit(line: str, indent: int = 4, cols: int | None = None) -> str:
    """``line`` wrapped to the width; continuation lines indented by ``indent``; long words broken."""
    cols = cols or width()
    if len(line) <= cols:
        return line
    lead = len(line) - len(line.lstrip(" "))
    return "\n".join(textwrap.wrap(line, cols, subsequent_indent=" " * (lead + indent), break_on_hyphens=False,
                                   replace_whitespace=False, drop_whitespace=True)) or line


def columns(header: list[str], rows: list[dict[str, str]], label_width: int, cols: int | None = None) -> str:
    """A table with one label column and one column per entry of ``header``; cells wrap inside their
    column, so side-by-side values stay side by side within the width."""
    cols = cols or width()
    n = len(header)
    cell = max(12, (cols - label_width - 2 * n) // max(1, n))
    out = []

    def emit(label: str, cells: list[str]) -> None:
        wrapped = [textwrap.wrap(c, cell, break_on_hyphens=False) or [""] for c in cells]
        for i in range(max(len(w) for w in wrapped)):
            left = label if i == 0 else ""
            out.append((left.ljust(label_width) + "  "
                        + "  ".join((w[i] if i < len(w) else "").ljust(cell) for w in wrapped)).rstrip())

    emit("", header)
    for key in rows[0] if rows else ():
        emit(key, [r[key] for r in rows])
    return "\n".join(out)
