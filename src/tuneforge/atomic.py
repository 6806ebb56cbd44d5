"""Files that are either the old version or the new one, never half of either.

A crash, a kill or a full disk in the middle of a write leaves the previous file in place: the
text goes to a temporary file beside the target, is flushed to disk, and only then renamed over
it (a rename within one folder is atomic on POSIX and on Windows' NTFS).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
