"""engine=avalanche: the lab's experiments through Avalanche's strategies (avalanche-lib).

Import lab.avalanche.engine only when that engine runs: importing Avalanche takes seconds.
"""

import json
import os
import tempfile
from pathlib import Path


def _write_avalanche_config() -> None:
    """Avalanche's first import writes ~/.avalanche/config.json in place and reads it back:
    two processes importing it at once on a new machine (a parallel sweep, pytest-xdist)
    can read the other's empty file and fail with a JSONDecodeError. Write it atomically
    first, with Avalanche's own default content."""
    path = Path("~/.avalanche/config.json").expanduser()
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({"dataset_location": str(path.parent / "data")}, f, indent=4)
    os.replace(tmp, path)


_write_avalanche_config()
