"""Print one of the README's two set-up commands, so CI runs exactly what the README says.

The README marks them with HTML comments: the line after ``<!-- main-command -->`` or
``<!-- test-command -->`` inside a fenced block. Usage: ``python ci/readme_command.py test``.
"""

from __future__ import annotations

import pathlib
import sys


def readme_command(which: str, readme: pathlib.Path) -> str:
    """Return the command marked ``<!-- {which}-command -->`` in ``readme``."""
    lines = readme.read_text().splitlines()
    marker = f"<!-- {which}-command -->"
    for i, line in enumerate(lines):
        if line.strip() == marker:
            for cand in lines[i + 1 :]:
                s = cand.strip()
                if s and not s.startswith("```"):
                    return s
    raise SystemExit(f"no {marker} in {readme}")


if __name__ == "__main__":
    root = pathlib.Path(__file__).resolve().parent.parent
    print(readme_command(sys.argv[1] if len(sys.argv) > 1 else "test", root / "README.md"))
