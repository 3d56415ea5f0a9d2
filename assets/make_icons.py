#!/usr/bin/env python3
"""Write every icon file under assets/ from the one drawing in labrouter.desktop.icons.

Owns the list of files and sizes; the drawing itself lives in ``draw_icon``, so a change
to the design is one edit there and one run of this script:

    python assets/make_icons.py          # rewrite the files
    python assets/make_icons.py --check  # exit 1 if a committed file is out of date

Needs Pillow and an installed labrouter (``pip install -e .``).
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from labrouter.desktop.icons import draw_icon

HERE = Path(__file__).resolve().parent
TRAY_STATES = ("ok", "degraded", "paused", "offline")
TRAY_SIZES = (16, 22, 24, 32, 48, 64)  # Windows 16/24/32 at 100-200 %, Linux panels 22-48
TEMPLATE_SIZES = (18, 36)  # the macOS menu bar: 18 pt at 1x and 2x
APP_SIZES = (16, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _ico() -> bytes:
    buf = io.BytesIO()
    # every size drawn at its own resolution, not scaled down from the largest one
    images = [draw_icon("app", s) for s in ICO_SIZES]
    images[-1].save(buf, format="ICO", sizes=[(s, s) for s in ICO_SIZES],
                    append_images=images[:-1])
    return buf.getvalue()


def _icns() -> bytes:
    buf = io.BytesIO()
    images = [draw_icon("app", s) for s in ICNS_SIZES]
    images[-1].save(buf, format="ICNS", append_images=images[:-1])
    return buf.getvalue()


def files() -> dict[str, Callable[[], bytes]]:
    """Relative path under assets/ -> a function producing its bytes."""
    out: dict[str, Callable[[], bytes]] = {}
    for state in TRAY_STATES:
        for size in TRAY_SIZES:
            out[f"tray/{state}-{size}.png"] = lambda st=state, sz=size: _png(draw_icon(st, sz))
        for size in TEMPLATE_SIZES:
            out[f"tray/{state}-template-{size}.png"] = (
                lambda st=state, sz=size: _png(draw_icon(st, sz, template=True)))
    for size in APP_SIZES:
        out[f"app/labrouter-{size}.png"] = lambda sz=size: _png(draw_icon("app", sz))
    out["labrouter.ico"] = _ico
    out["labrouter.icns"] = _icns
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the files on disk instead of writing")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (assets/)")
    args = parser.parse_args(argv)
    stale: list[str] = []
    total = 0
    for rel, make in files().items():
        data = make()
        total += len(data)
        path = args.out / rel
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
            print(f"wrote {path}")
    if args.check:
        for rel in stale:
            print(f"out of date: assets/{rel}", file=sys.stderr)
        if stale:
            print("run: python assets/make_icons.py", file=sys.stderr)
        return 1 if stale else 0
    print(f"{len(files())} files, {total / 1024:.0f} KiB in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
