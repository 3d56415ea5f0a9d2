"""Entry point of the standalone builds (PyInstaller): `labrouter` with no arguments runs
the daemon (what a double-click on the app or the .exe should do); with arguments it is
the ordinary command line, so `labrouter.exe autostart enable` and the entries written by
autostart (`<exe> run`) work the same as in a pip installation.
"""

from __future__ import annotations

import multiprocessing
import sys

from labrouter.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # harmless unless something uses multiprocessing
    raise SystemExit(main(sys.argv[1:] or ["run"]))
