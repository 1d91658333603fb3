"""Atomic file writes: write to a temporary name beside the target, then rename over it.

A crash (or SIGKILL) mid-write leaves the old file or no file, never a torn one that a later stage or the API would
load. The rename is atomic because the temporary file lives in the same directory as the target.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """A temporary path to write to; renamed to `target` when the block ends without an exception, else removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600; the file should read like any other we write
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(target: Path | str, text: str) -> Path:
    """Write `text` to `target` atomically."""
    with atomic_path(target) as temporary:
        temporary.write_text(text)
    return Path(target)


def write_json(target: Path | str, content: Any, indent: int | None = 2) -> Path:
    """Write `content` as JSON (with a final newline) to `target` atomically."""
    return write_text(target, json.dumps(content, indent=indent) + "\n")


def copy_file(source: Path | str, target: Path | str) -> Path:
    """Copy `source` to `target` atomically (a reader of `target` never sees half a file)."""
    with atomic_path(target) as temporary:
        shutil.copyfile(source, temporary)
    return Path(target)
