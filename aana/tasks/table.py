"""Plain-text tables for ``aana tasks``: a header, a rule, and aligned columns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """The rows under ``headers``, each column as wide as its widest cell; None shows as "-".

    Numbers are aligned right, everything else left.
    """
    body = [[("-" if value is None else str(value)) for value in row] for row in rows]
    numeric = [
        bool(body) and all(_is_number(row[index]) for row in body) for index in range(len(headers))
    ]
    widths = [
        max([len(header), *(len(row[index]) for row in body)])
        for index, header in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        aligned = (
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, numeric, strict=True)
        )
        return "  ".join(aligned).rstrip()

    rule = ["-" * width for width in widths]
    return "\n".join([line(list(headers)), line(rule), *(line(row) for row in body)])


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell == "-"
    return True
