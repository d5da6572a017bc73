"""Plain-text tables for the terminal and Markdown files (one formatter for all)."""

from __future__ import annotations

from collections.abc import Sequence


def _cell(v: object, digits: int) -> str:
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.{digits}f}"
    return str(v)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], digits: int = 3,
                 markdown: bool = False) -> str:
    """Align columns; floats get `digits` decimals and NaN prints as n/a."""
    cells = [[_cell(v, digits) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    sep = " | " if markdown else "  "

    def line(values: Sequence[str]) -> str:
        body = sep.join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))
        return f"| {body} |" if markdown else body.rstrip()

    rule = ("|" + "|".join("-" * (w + 2) for w in widths) + "|") if markdown else "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), rule, *(line(r) for r in cells)])
