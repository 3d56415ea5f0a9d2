"""Make every write under one folder fail with one OS error, in this process.

For the "no traceback from an ordinary mistake" tests: root (which runs CI) can write
anywhere, so a folder that a ``sudo`` run left owned by root, or a full disk, is simulated
at the OS boundary: ``os.mkdir``, ``os.open``/``open`` for writing, ``os.replace``/
``os.rename`` into the folder raise ``OSError(errno, strerror, path)`` as the kernel would.
Reading still works, as it does in a folder owned by someone else with mode 755.

Run as ``python -m tests.fakes.oserrors ERRNO_NAME FOLDER -- labrouter ARGS...``.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import sys
from typing import Any


def install(folder: str, err: int) -> None:
    root = os.path.realpath(folder)

    def under(path: Any) -> bool:
        try:
            p = os.path.realpath(os.fsdecode(path))
        except TypeError:  # a file descriptor
            return False
        return p == root or p.startswith(root + os.sep)

    def fail(path: Any) -> OSError:
        return OSError(err, os.strerror(err), os.fsdecode(path))

    real_mkdir, real_open, real_os_open = os.mkdir, builtins.open, os.open
    real_replace, real_rename = os.replace, os.rename

    def mkdir(path: Any, *a: Any, **kw: Any) -> None:
        if under(path) and not os.path.isdir(path):
            raise fail(path)
        real_mkdir(path, *a, **kw)

    def os_open(path: Any, flags: int, *a: Any, **kw: Any) -> int:
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise fail(path)
        return real_os_open(path, flags, *a, **kw)

    def open_(file: Any, mode: str = "r", *a: Any, **kw: Any) -> Any:
        if not isinstance(file, int) and under(file) and set(mode) & set("wax+"):
            raise fail(file)
        return real_open(file, mode, *a, **kw)

    def replace(src: Any, dst: Any, *a: Any, **kw: Any) -> None:
        if under(dst):
            raise fail(dst)
        real_replace(src, dst, *a, **kw)

    def rename(src: Any, dst: Any, *a: Any, **kw: Any) -> None:
        if under(dst):
            raise fail(dst)
        real_rename(src, dst, *a, **kw)

    os.mkdir, os.open, os.replace, os.rename = mkdir, os_open, replace, rename
    builtins.open = io.open = open_


def main() -> int:
    name, folder, sep, *args = sys.argv[1:]
    assert sep == "--" and args[0] == "labrouter"
    install(folder, getattr(errno, name))
    from labrouter.cli import main as labrouter

    return labrouter(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
