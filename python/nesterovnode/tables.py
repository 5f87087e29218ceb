"""Fixed-width text tables, the one format every command prints."""

from __future__ import annotations

from collections.abc import Sequence


def text_table(
    head: Sequence[str], rows: Sequence[Sequence[str]], numbers_right: bool = False
) -> str:
    """Header, a rule of dashes, then the rows, columns two spaces apart. Cells are
    left-aligned; with ``numbers_right`` every column but the first is right-aligned."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)
    ]

    def line(cells):
        return "  ".join(
            c.rjust(w) if numbers_right and i else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join(s.rstrip() for s in [line(head), rule, *(line(r) for r in rows)])
