"""``python -m dlgpu.ops [--update-readme]``: the op x backend table (markdown), read from the kernel
modules themselves; ``--update-readme`` rewrites the table in README.md between its markers."""

from __future__ import annotations

import pathlib
import sys

from . import BACKENDS, OPS, op_table

BEGIN, END = "<!-- op-table -->", "<!-- /op-table -->"


def markdown_table() -> str:
    """The table of ops (rows) by backend (columns), grouped by family, as markdown."""
    table = op_table()
    lines = ["| family | op | " + " | ".join(BACKENDS) + " |", "|---|---|" + "---|" * len(BACKENDS)]
    for op, row in table.items():
        lines.append(f"| {OPS[op]} | `{op}` | " + " | ".join("yes" if row[b] else "-" for b in BACKENDS) + " |")
    return "\n".join(lines)


def readme_with_table(text: str) -> str:
    """``text`` (README.md) with the block between the op-table markers replaced by the current table."""
    i, j = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:i] + "\n" + markdown_table() + "\n" + text[j:]


if __name__ == "__main__":
    if "--update-readme" in sys.argv[1:]:
        path = pathlib.Path(__file__).resolve().parents[2] / "README.md"
        path.write_text(readme_with_table(path.read_text()))
        print(f"updated {path}")
    else:
        print(markdown_table())
