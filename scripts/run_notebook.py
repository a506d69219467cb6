"""Execute a notebook from a clean kernel and fail on the first cell that raises.

    python scripts/run_notebook.py examples/quickstart.ipynb [--out executed.ipynb]

What `make notebook` and CI run. The notebook in git keeps no outputs (tests/test_docs.py
checks it); the executed copy is written only where --out says. The kernel is this
Python's (ipykernel's python3 kernel of the venv), in the repository's root.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parent.parent


def execute(path: Path, timeout: int = 600) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(REPO)}},
    )
    client.execute()
    return notebook


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--out", type=Path, help="write the executed notebook here")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        notebook = execute(args.notebook, args.timeout)
    except CellExecutionError as error:
        print(f"{args.notebook}: a cell failed\n{error}", file=sys.stderr)
        sys.exit(1)
    if args.out is not None:
        nbformat.write(notebook, args.out)
    cells = sum(1 for c in notebook.cells if c.cell_type == "code")
    print(f"{args.notebook}: {cells} code cells ran in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
