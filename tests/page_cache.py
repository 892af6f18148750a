"""The page cache seen from tests: a file dropped from it, and whether all of it is there."""

import os
import subprocess
from pathlib import Path


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache (written back first, so that none stays)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident(path: Path) -> bool:
    """All of the file in the page cache, asked of mincore(2) through util-linux's fincore: a
    read that must not wait (RWF_NOWAIT) starts reading what it misses, so it cannot tell."""
    cached = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(cached) >= path.stat().st_size  # whole pages
