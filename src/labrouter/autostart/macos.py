"""Start at login on macOS: a LaunchAgent in ~/Library/LaunchAgents.

Owns writing and removing ``io.labrouter.daemon.plist`` and loading it into the user's
``gui/<uid>`` launchd domain (``launchctl bootstrap`` / ``bootout``, the replacements of
the legacy load/unload). Without a reachable launchctl (not macOS, an SSH session without
a GUI domain) the plist is still written and takes effect at the next login.

Must not import ``labrouter.desktop``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from . import ABSENT, ENABLED, STALE, EntryStatus, Runner, same_program
from .render import LABEL, Installation, differences, expected_entry, parse_plist, render_plist


class LaunchAgentAutostart:
    platform = "macos"

    def __init__(self, home: Path, runner: Runner, uid: int | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.home = home
        self.runner = runner
        self.sleep = sleep
        self.uid = os.getuid() if uid is None and hasattr(os, "getuid") else (uid or 0)

    @property
    def plist_path(self) -> Path:
        return self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    @property
    def domain(self) -> str:
        return f"gui/{self.uid}"

    def _launchctl(self, *args: str) -> tuple[int, str]:
        cp = self.runner(["launchctl", *args])
        return cp.returncode, (cp.stderr or cp.stdout or "").strip()

    def enable(self, inst: Installation) -> list[str]:
        out: list[str] = []
        data = render_plist(inst)
        path = self.plist_path
        path.parent.mkdir(parents=True, exist_ok=True)
        Path(inst.log_dir).mkdir(parents=True, exist_ok=True)  # launchd will not create it
        changed = not path.exists() or path.read_bytes() != data
        if changed:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            out.append(f"wrote {path}")
        else:
            out.append(f"{path} is already up to date")
        # bootout first: bootstrap of a label that is already loaded fails (error 5/37),
        # and a changed plist is only read again on bootstrap
        booted_out = self._launchctl("bootout", f"{self.domain}/{LABEL}")[0] == 0
        rc, err = self._launchctl("bootstrap", self.domain, str(path))
        for _ in range(3 if booted_out else 0):
            # bootout returns before launchd has let go of the label; bootstrap right
            # after it fails with "Input/output error" (5) for a moment
            if rc in (0, 127):
                break
            self.sleep(0.5)
            rc, err = self._launchctl("bootstrap", self.domain, str(path))
        if rc == 0:
            out.append(f"loaded into launchd ({self.domain}); started by launchd")
        elif rc == 127:
            out.append("launchctl is not available here: the agent starts at your next login")
        else:
            out.append(f"launchctl bootstrap failed ({err or rc}): the agent starts at your "
                       f"next login, or run: launchctl bootstrap {self.domain} '{path}'")
        return out

    def disable(self) -> list[str]:
        out: list[str] = []
        rc, _ = self._launchctl("bootout", f"{self.domain}/{LABEL}")
        if rc == 0:
            out.append(f"unloaded {LABEL} from launchd (the daemon was stopped)")
        path = self.plist_path
        if path.exists():
            path.unlink()
            out.append(f"removed {path}")
        if not out:
            out.append("start at login was not enabled: nothing to remove")
        return out

    def status(self, inst: Installation) -> list[EntryStatus]:
        path = self.plist_path
        if not path.exists():
            return [EntryStatus("LaunchAgent", str(path), ABSENT)]
        try:
            entry = parse_plist(path.read_bytes())
        except Exception as exc:  # plistlib raises several types for a damaged file
            return [EntryStatus("LaunchAgent", str(path), STALE,
                                why=(f"the plist cannot be read ({exc})",))]
        expected = expected_entry(_like(inst, entry.headless))
        why = differences(entry, expected, same_program)
        rc, _ = self._launchctl("print", f"{self.domain}/{LABEL}")
        running = {0: "loaded in launchd", 127: ""}.get(rc, "not loaded in launchd")
        return [EntryStatus("LaunchAgent", str(path), STALE if why else ENABLED, entry,
                            tuple(why), running)]


def _like(inst: Installation, headless: bool) -> Installation:
    from dataclasses import replace

    return replace(inst, headless=headless)
