"""The readable usage summary the tray's "Open usage statistics" opens (a text file in the
data directory, written atomically). Blocking: worker threads only."""

from __future__ import annotations

from pathlib import Path

from ..settings import Context


def usage_report(ctx: Context, days: int = 7) -> Path:
    """Write a readable summary of the last ``days`` of usage; returns its path."""
    from ...core.usage import summarise
    from ..paths import write_atomic
    from ..usagelog import UsageLog

    records, _bad = UsageLog(ctx.paths.data_dir, ctx.config.usage.retention_days).read(days)
    s = summarise(records)
    lines = [f"labrouter usage, last {days} days", "",
             f"requests: {s.requests}  answered: {s.answered}  tokens: {s.tokens}  "
             f"cost: ${s.cost_usd:.4f}  fallovers: {s.fallovers}", ""]
    for title, table in (("by route", s.by_route), ("by model", s.by_model),
                         ("by machine", s.by_node)):
        lines.append(title)
        for key, g in table.items():
            lines.append(f"  {key:<32} {g.requests:>6} requests  {g.share:6.1%}  "
                         f"median {g.median_ms:8.0f} ms")
        lines.append("")
    lines.append(f"(raw logs: {ctx.paths.data_dir}/usage-*.jsonl; `labrouter stats` in a "
                 "terminal)")
    path = ctx.paths.data_dir / "usage-summary.txt"
    write_atomic(path, "\n".join(lines) + "\n")
    return path
