"""Run a command with the CUDA C kernels' host runs under a sanitizer: compute-sanitizer's memcheck
and racecheck for a machine without a GPU.

    python -m dlgpu.kernels.cuda.hostcheck --tool racecheck python -m pytest tests/cuda -k host
    python -m dlgpu.kernels.cuda.hostcheck --tool memcheck python my_script.py

The command runs with the sanitizer's runtime preloaded (from the C++ compiler that builds the host
modules), ``DLGPU_HOST_SANITIZER`` set, and dlgpu's default sanitizer options under the user's own.
Every kernel that ``_host.host_run()`` executes is then compiled instrumented (cached separately),
and a report during a launch makes that launch raise RuntimeError with the report, so under pytest
the test that ran the kernel fails. The sanitizer writes into a log folder
(``$DLGPU_HOSTCHECK_DIR``). A sanitizer that stops the process (too many threads, a segfault) says
why only there, with exit status 0: so whatever the log holds that no launch read is printed, and
the run fails (status 3 when the command itself said 0). What each tool sees: ``host/dlgpu_host.h``,
"Sanitizers".
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ._host import SANITIZERS, find_cxx


def runtime_path(tool: str) -> Path:
    """The sanitizer runtime library of ``tool`` that the host C++ compiler links against."""
    cxx = find_cxx()
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++ or $CXX) to build the host modules with")
    lib = SANITIZERS[tool].runtime
    out = subprocess.run([cxx, f"-print-file-name={lib}"], capture_output=True, text=True, check=True).stdout.strip()
    path = Path(out)
    if not path.is_absolute() or not path.exists():
        raise RuntimeError(f"{cxx} has no {lib} (install the compiler's sanitizer runtime, e.g. libasan/libtsan)")
    return path.resolve()


def environment(tool: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: os.environ) with ``tool``'s runtime preloaded, DLGPU_HOST_SANITIZER set and
    the sanitizer's options: dlgpu's defaults, then the user's (later options win). ValueError for an
    unknown tool, RuntimeError without the runtime or inside another hostcheck run."""
    if tool not in SANITIZERS:
        raise ValueError(f"tool: expected one of {sorted(SANITIZERS)}, got {tool!r}")
    env = dict(os.environ if base is None else base)
    if env.get("DLGPU_HOST_SANITIZER"):  # two sanitizer runtimes in one process do not mix
        raise RuntimeError(f"already inside a hostcheck run (DLGPU_HOST_SANITIZER={env['DLGPU_HOST_SANITIZER']})")
    san = SANITIZERS[tool]
    env["LD_PRELOAD"] = os.pathsep.join(p for p in (str(runtime_path(tool)), env.get("LD_PRELOAD", "")) if p)
    env["DLGPU_HOST_SANITIZER"] = tool
    env[san.options_var] = ":".join(o for o in (san.options, env.get(san.options_var, "")) if o)
    return env


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``--tool`` and run the command under it; returns the command's exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m dlgpu.kernels.cuda.hostcheck", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--tool", choices=sorted(SANITIZERS), default="memcheck")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run (e.g. python -m pytest ...)")
    args = parser.parse_args(argv)
    if not args.command:
        parser.error("no command to run")
    try:
        env = environment(args.tool)
    except RuntimeError as e:
        print(f"hostcheck: {e}", file=sys.stderr)
        return 2
    logs = Path(tempfile.mkdtemp(prefix="dlgpu-hostcheck-"))
    env["DLGPU_HOSTCHECK_DIR"] = str(logs)
    rc = subprocess.run(args.command, env=env, check=False).returncode
    unread = {log: text for log in sorted(logs.glob("report.*")) if (text := unread_report(log))}
    for log, text in unread.items():
        tail = text.splitlines()[-40:]
        print(f"hostcheck: {args.tool} wrote what no kernel launch reported; the end of {log}:", *tail, sep="\n",
              file=sys.stderr)  # fmt: skip
    if rc == 0 and unread:
        return 3
    if rc == 0:
        shutil.rmtree(logs, ignore_errors=True)
    return rc


# what a sanitizer prints at exit after reports that the launches already raised
_EXIT_SUMMARY = re.compile(r"^ThreadSanitizer: reported \d+ warnings\n?", re.MULTILINE)


def unread_report(log: Path) -> str:
    """The part of the sanitizer log ``log`` (``report.<pid>``) that its process did not read (its
    ``read.<pid>``), without the exit summary: a sanitizer that stopped the process, say."""
    read = log.with_name("read." + log.name.split(".", 1)[1])
    start = int(read.read_text()) if read.is_file() else 0
    with log.open("rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    return _EXIT_SUMMARY.sub("", text).strip()


if __name__ == "__main__":
    sys.exit(main())
