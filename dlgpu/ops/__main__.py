"""``python -m dlgpu.ops``: print the op x backend table (markdown) from the kernel modules."""

from __future__ import annotations

from . import BACKENDS, OPS, op_table


def markdown_table() -> str:
    """The table of ops (rows) by backend (columns), grouped by family, as markdown."""
    table = op_table()
    lines = ["| family | op | " + " | ".join(BACKENDS) + " |", "|---|---|" + "---|" * len(BACKENDS)]
    for op, row in table.items():
        lines.append(f"| {OPS[op]} | `{op}` | " + " | ".join("yes" if row[b] else "-" for b in BACKENDS) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
