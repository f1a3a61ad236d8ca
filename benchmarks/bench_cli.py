"""How long the command line takes to answer, each run in a fresh Python process.

Usage:
    python benchmarks/bench_cli.py                     # `vw-robot --help`, median of 5
    python benchmarks/bench_cli.py --repeats 9 -- train --help
    python benchmarks/bench_cli.py -- data import-lerobot --cfg

Runs the ``vw-robot`` console script beside this Python ``--repeats`` times after one untimed
warm-up run (which fills the bytecode and page caches), and prints the median, min and max
wall-clock seconds, and which heavy modules the same command imported (in another fresh
process). Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Imported by a job, never needed to answer --help (checked in the same fresh process).
HEAVY = ("torch", "mujoco", "metaworld", "robosuite", "pyarrow", "websockets")
PROBE = (
    "import runpy, sys; sys.argv = ['vw-robot', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('vw_robot.cli', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    f"print('HEAVY', *[m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n"
)


def time_command(args: list[str], repeats: int) -> tuple[list[float], list[str]]:
    """Wall-clock seconds of ``repeats`` fresh runs of ``vw-robot ARGS``, and the heavy modules
    the last run imported."""
    command = [str(Path(sys.executable).parent / "vw-robot"), *args]
    subprocess.run(command, capture_output=True, check=False)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=False
    )
    heavy = next(
        (line.split()[1:] for line in probe.stderr.splitlines() if line.startswith("HEAVY")), []
    )
    return times, heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("args", nargs="*", default=["--help"], help="vw-robot's arguments")
    options = parser.parse_args()
    times, heavy = time_command(options.args, options.repeats)
    print(
        f"`vw-robot {' '.join(options.args)}`: median {statistics.median(times):.2f} s "
        f"(min {min(times):.2f}, max {max(times):.2f}, {len(times)} fresh processes); "
        f"heavy modules imported: {', '.join(heavy) or 'none'}"
    )


if __name__ == "__main__":
    main()
