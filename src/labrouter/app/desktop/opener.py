"""Opening a file or folder with the desktop's default application (xdg-open, open,
os.startfile). Never blocks: the opener runs detached."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def open_path(path: Path | str) -> None:
    """Open a file, a folder or a URL with the desktop's default application (for a URL,
    the web browser); never blocks."""
    if sys.platform == "win32":
        os.startfile(str(path))  # type: ignore[attr-defined]
        return
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    subprocess.Popen([opener, str(path)], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
