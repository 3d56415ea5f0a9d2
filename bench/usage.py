"""How long the usage figures take for a busy lab: the page and `labrouter stats`.

Writes a made-up log (tests/fakes/usage_lab.py: three machines, fallovers, cloud spend,
work for peers; 200 requests a day plus about 8 % served for peers) into a throw-away
LABROUTER_HOME, then measures, best of --repeat runs:

- the usage page for 30 days: reading the files, and rendering the HTML alone;
- `labrouter stats --days 365` as a user runs it (a new Python process: start-up, imports,
  reading a year of files, the summary, the text with its charts), and `--json`;
- the same in-process, with and without the per-day cache (app/usagestats.py), to
  separate start-up from work and the cache's share of it.

The goal (issue 14): stats over a year of logs, the retention limit, under a second.

Run: python bench/usage.py [--per-day 200] [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from labrouter.app.usagelog import UsageLog  # noqa: E402
from labrouter.app.usagepage import PageSettings, render_page  # noqa: E402
from labrouter.app.usagestats import summarise_days  # noqa: E402
from labrouter.commands.stats import UNICODE, write_report  # noqa: E402
from labrouter.core.usage import summarise  # noqa: E402
from tests.fakes.usage_lab import lab_records  # noqa: E402


def best(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(best, median) wall time of ``fn`` in seconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-day", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    now = time.time()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        data = home / "data"
        t = time.perf_counter()
        log = UsageLog(data, retention_days=0)
        records = lab_records(365, args.per_day, now)
        lines: dict[Path, list[str]] = {}
        for r in records:
            lines.setdefault(log.file_for(r.ts), []).append(r.to_json())
        data.mkdir(parents=True)
        for path, ls in lines.items():
            path.write_text("\n".join(ls) + "\n", encoding="utf-8")
        size = sum(p.stat().st_size for p in data.iterdir())
        print(f"log: {len(records)} records in {len(lines)} files, {size / 1e6:.1f} MB "
              f"(written in {time.perf_counter() - t:.1f} s)")

        month, _ = log.read(30)
        settings = PageSettings(node="gpu-box", daily_budget_usd=0.25)
        b, m = best(lambda: log.read(30), args.repeat)
        print(f"page, 30 days ({len(month)} records): read {b * 1000:.0f} ms "
              f"(median {m * 1000:.0f})", end="")
        b2, m2 = best(lambda: render_page(month, "30d", now, settings), args.repeat)
        html = render_page(month, "30d", now, settings)
        print(f", render {b2 * 1000:.0f} ms (median {m2 * 1000:.0f}), "
              f"{len(html) / 1000:.0f} kB of HTML")

        cache = data / "cache"

        def cold() -> None:
            shutil.rmtree(cache, ignore_errors=True)
            s, _ = summarise_days(data, 365, now)
            write_report(s, 365, UNICODE, io.StringIO(), now)

        def warm() -> None:
            s, _ = summarise_days(data, 365, now)
            write_report(s, 365, UNICODE, io.StringIO(), now)

        b, m = best(cold, args.repeat)
        print(f"stats, 365 days in-process, no cache (parse every file, tally, write the "
              f"day caches, text): {b * 1000:.0f} ms (median {m * 1000:.0f})")
        recs, _ = log.read(365)
        b, m = best(lambda: log.read(365), args.repeat)
        b2, m2 = best(lambda: summarise(recs), args.repeat)
        print(f"  for comparison: UsageLog.read {b * 1000:.0f} ms, summarise "
              f"{b2 * 1000:.0f} ms")
        b, m = best(warm, args.repeat)
        print(f"stats, 365 days in-process, day caches in place (today parsed): "
              f"{b * 1000:.0f} ms (median {m * 1000:.0f})")

        env = {**os.environ, "LABROUTER_HOME": str(home), "PYTHONIOENCODING": "utf-8",
               "PYTHONPATH": str(ROOT / "src")}
        shutil.rmtree(cache, ignore_errors=True)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "labrouter", "stats", "--days", "365"], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        print(f"`labrouter stats --days 365`, first run (no cache yet): "
              f"{(time.perf_counter() - t) * 1000:.0f} ms")
        for extra in ([], ["--json"]):
            cmd = [sys.executable, "-m", "labrouter", "stats", "--days", "365", *extra]
            cpu: list[float] = []

            def run(cmd: list[str] = cmd, cpu: list[float] = cpu) -> None:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)

            b, m = best(run, args.repeat)
            verdict = "under" if b < 1.0 else "OVER"
            # CPU time too: on a shared machine the wall time says as much about the others
            print(f"`labrouter stats --days 365{' --json' if extra else ''}`: {b * 1000:.0f} ms "
                  f"(median {m * 1000:.0f}), {verdict} a second; CPU {min(cpu) * 1000:.0f} ms")
        b, m = best(lambda: subprocess.run([sys.executable, "-c", "import labrouter.cli"],
                                           env=env, check=True), args.repeat)
        print(f"  (python start-up + `import labrouter.cli` alone: {b * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
