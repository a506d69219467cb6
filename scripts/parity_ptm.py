"""Parity of the pre-trained-model learners (issue 31) with their reference code, in one run.

    python scripts/parity_ptm.py --mammoth ~/src/mammoth --pilot ~/src/LAMDA-PILOT
    python scripts/parity_ptm.py prompt            # one family (MAMMOTH_ROOT, PILOT_ROOT set)

MAMMOTH_PYTHON and PILOT_PYTHON name the references' environments (their pinned timm).

Runs each family's script (scripts/parity_ptm_<family>.py: proto = SimpleCIL, APER and
RanPAC against LAMDA-PILOT; prompt = L2P, DualPrompt and CODA-Prompt against Mammoth;
slca = SLCA against Mammoth and LAMDA-PILOT), each in turn, and prints their tables one
after the other, as docs/ptm.md shows them. Each family's script says which reference
commit it was written against, which environment runs the reference (the versions the
reference pins), and how to make that environment. Exits 1 if any family's does.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAMILIES = ("proto", "prompt", "slca")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("families", nargs="*", help=f"some of {', '.join(FAMILIES)} (default: all)")
    parser.add_argument("--mammoth", help="a checkout of aimagelab/mammoth (or MAMMOTH_ROOT)")
    parser.add_argument("--pilot", help="a checkout of sun-hailong/LAMDA-PILOT (or PILOT_ROOT)")
    args, rest = parser.parse_known_args(argv)
    unknown = [f for f in args.families if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown family {', '.join(unknown)}; valid: {', '.join(FAMILIES)}")
    roots = [f"--{k}={v}" for k, v in (("mammoth", args.mammoth), ("pilot", args.pilot)) if v]
    failed = []
    for family in args.families or FAMILIES:
        print(f"\n## {family}\n", flush=True)
        script = HERE / f"parity_ptm_{family}.py"
        done = subprocess.run([sys.executable, str(script), *roots, *rest])
        if done.returncode:
            failed.append(family)
    if failed:
        print(f"\nparity_ptm.py: {', '.join(failed)} failed (above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
