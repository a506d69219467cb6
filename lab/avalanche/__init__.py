"""engine=avalanche: the lab's experiments through Avalanche's strategies (avalanche-lib).

Import lab.avalanche.engine only when that engine runs: importing Avalanche takes seconds.
"""

from pathlib import Path

from lab.tracking import write_json_atomic


def _write_avalanche_config() -> None:
    """Avalanche's first import writes ~/.avalanche/config.json in place and reads it back:
    two processes importing it at once on a new machine (a parallel sweep, pytest-xdist)
    can read the other's empty file and fail with a JSONDecodeError. Write it atomically
    first, with Avalanche's own default content."""
    path = Path("~/.avalanche/config.json").expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"dataset_location": str(path.parent / "data")})


_write_avalanche_config()
