"""Recent answers that survive a restart: the last N in the data directory, readable by
this user only (mode 0600), written atomically; ``[desktop] history = N``, 0 turns it off
(and removes what was kept). A damaged file is set aside, never a reason not to start.

Blocking (file I/O): worker threads only.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from ...desktop.tray import RecentAnswer

log = logging.getLogger(__name__)

FILE_NAME = "recent-answers.json"


class RecentStore:
    def __init__(self, data_dir: Path, keep: int) -> None:
        self.path = data_dir / FILE_NAME
        self.keep = max(0, keep)

    def load(self) -> list[RecentAnswer]:
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
            return []
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            items = [RecentAnswer(str(r["question"]), str(r["answer"]), str(r["label"]),
                                  float(r["at"])) for r in raw]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("%s is damaged; starting with no recent answers", self.path)
            try:
                self.path.replace(self.path.with_suffix(".damaged"))
            except OSError:
                pass
            return []
        return items[: self.keep]

    def save(self, recent: Sequence[RecentAnswer]) -> None:
        if self.keep == 0:
            return
        data = [{"question": r.question, "answer": r.answer, "label": r.label, "at": r.at}
                for r in list(recent)[: self.keep]]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        # created 0600 from the start: never readable by others, not even for a moment
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
