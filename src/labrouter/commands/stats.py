"""CLI command: `stats`, where this machine's requests (and its work for peers) went.

Owns the terminal form of the statistics: tables with bars (route shares, tokens per
machine), a per-day sparkline, the "code: 12 requests, 9 answered by the quick model"
lines and the fallover reasons; Unicode block characters where the terminal's encoding
has them, plain ASCII where it does not, no charts with ``--json``. ``--open`` shows the
same as a page in the web browser (``app/usagepage.py``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from ..app.settings import Context
from ..core.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "stats", help="where your requests went: routes, models, machines, fallovers",
        description="Requests, tokens and times per route, model and machine from this "
                    "machine's usage log; which classified routes were answered elsewhere "
                    "and why; work done for other machines over the relay.")
    s.add_argument("--days", type=int, default=7, help="how many days back (default 7)")
    s.add_argument("--json", action="store_true", help="print JSON (no charts)")
    s.add_argument("--open", action="store_true",
                   help="open the usage page (charts) in the web browser")
    s.add_argument("--ascii", action="store_true",
                   help="draw the charts with plain ASCII characters")
    s.set_defaults(handler=_stats)


# ------------------------------------------------------------------ drawing


@dataclass(frozen=True)
class Charset:
    full: str
    eighths: str  # partial blocks, 1/8 .. 7/8
    empty: str
    spark: str  # lowest (but not zero) .. highest

    def bar(self, fraction: float, width: int) -> str:
        """A bar ``fraction`` (0..1) of ``width`` cells, padded to ``width``."""
        fraction = min(1.0, max(0.0, fraction))
        if not self.eighths:
            n = round(fraction * width)
            if fraction > 0 and n == 0:
                n = 1  # a share that exists is never drawn as nothing
            return self.full * n + self.empty * (width - n)
        eighths = round(fraction * width * 8)
        if fraction > 0 and eighths == 0:
            eighths = 1
        whole, part = divmod(eighths, 8)
        out = self.full * whole + (self.eighths[part - 1] if part else "")
        return out + self.empty * (width - len(out))

    def sparkline(self, values: list[float]) -> str:
        top = max(values, default=0) or 1
        levels = len(self.spark)
        return "".join(" " if v <= 0 else self.spark[min(levels - 1, int(v / top * levels))]
                       for v in values)


UNICODE = Charset(full="█", eighths="▏▎▍▌▋▊▉", empty=" ", spark="▁▂▃▄▅▆▇█")
ASCII = Charset(full="#", eighths="", empty=".", spark=".:-=+*#")


def charset_for(stream: TextIO, force_ascii: bool = False) -> Charset:
    """Block characters when the stream's encoding can write them, else ASCII."""
    if force_ascii:
        return ASCII
    try:
        (UNICODE.full + UNICODE.eighths + UNICODE.spark).encode(
            getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return ASCII
    return UNICODE


# ------------------------------------------------------------------ the command


def _stats(args: argparse.Namespace, ctx: Context) -> int:
    from ..app.usagestats import summarise_days

    if args.days < 1:
        raise UsageError("--days must be 1 or more")
    if args.open:
        return _open(args, ctx)
    s, bad = summarise_days(ctx.paths.data_dir, args.days, time.time())
    if args.json:
        d = s.to_dict()
        d["days"] = args.days
        d["skipped_lines"] = bad
        print(json.dumps(d, indent=2))
        return 0
    out = sys.stdout
    if not s.requests and not s.served_for:
        print(f"no requests in the last {args.days} day(s) (logs in {ctx.paths.data_dir})"
              + (f"; {bad} unreadable line(s) skipped" if bad else ""))
        return 0
    write_report(s, args.days, charset_for(out, args.ascii), out, time.time())
    if bad:
        print(f"({bad} unreadable line(s) skipped)", file=out)
    return 0


def write_report(s: Any, days: int, cs: Charset, out: TextIO, now: float) -> None:
    """The text report of a ``Summary`` over the last ``days`` days."""
    from ..app.usagepage import fmt_count, fmt_ms

    def p(line: str = "") -> None:
        out.write(line + "\n")

    p(f"last {days} day(s): {s.requests} requests, {s.answered} answered, "
      f"{s.tokens} tokens, {s.fallovers} fell over"
      + (f", ${s.cost_usd:.2f} cloud" if s.cost_usd else "")
      + (f"; {s.served_for_requests} served for others" if s.served_for else ""))
    if days > 1 and s.requests:
        today = dt.date.fromtimestamp(now)
        span = [today - dt.timedelta(days=days - 1 - i) for i in range(min(days, 60))]
        counts = [sum(s.days.get(d.isoformat(), {}).values()) for d in span]
        p(f"\nper day  {cs.sparkline(counts)}  {span[0]:%d %b} .. {span[-1]:%d %b}, "
          f"most {max(counts)} a day")

    width = 20
    if s.by_route:
        p("\nby route (the route that answered):")
        w = max(len(k) for k in s.by_route)
        for k, g in s.by_route.items():
            p(f"  {k:<{w}}  {cs.bar(g.share, width)}  {g.share * 100:5.1f}%  "
              f"{g.requests:>6} req  {fmt_count(g.tokens):>6} tok  median "
              f"{g.median_ms / 1000:.2f} s")
    if s.by_model:
        p("\nby model:")
        w = max(len(k) for k in s.by_model)
        for k, g in s.by_model.items():
            p(f"  {k:<{w}}  {g.requests:>6} req  {g.share * 100:5.1f}%  "
              f"{fmt_count(g.tokens):>6} tok  first token {fmt_ms(g.median_ttft_ms)} "
              f"(p95 {fmt_ms(g.p95_ttft_ms)})")
    if s.by_node:
        p("\nby machine (tokens):")
        w = max(len(k) for k in s.by_node)
        top = max(g.tokens + g.peer_tokens for g in s.by_node.values()) or 1
        for k, g in s.by_node.items():
            total = g.tokens + g.peer_tokens
            line = (f"  {k:<{w}}  {cs.bar(total / top, width)}  {fmt_count(total):>6} tok  "
                    f"busy {fmt_ms(g.busy_ms + g.peer_busy_ms)}")
            if g.peer_requests:
                line += f"  ({fmt_count(g.peer_tokens)} tok for others)"
            p(line)
    crossings = s.crossings()
    if crossings:
        p("\nanswered on another route:")
        for classified, route, n, _why in crossings:
            reasons = s.flows[classified].reasons
            why = ", ".join(f"{k} {v}" if len(reasons) > 1 else k for k, v in reasons.items())
            p(f"  {classified}: {s.flows[classified].requests} requests, {n} answered by the "
              f"{route} model" + (f" ({why})" if why else ""))
    if s.fallover_reasons:
        p(f"\nfell over: {s.fallovers} of {s.requests} requests")
        w = max(len(k) for k in s.fallover_reasons)
        for k, n in s.fallover_reasons.items():
            p(f"  {k:<{w}}  {n:>5}")
    if s.served_for:
        tokens = sum(g.tokens for g in s.served_for.values())
        busy = sum(g.busy_ms for g in s.served_for.values())
        p(f"\nserved for others: {s.served_for_requests} requests, {fmt_count(tokens)} "
          f"tokens, busy {fmt_ms(busy)}")
        w = max(len(k) for k in s.served_for)
        for k, g in s.served_for.items():
            p(f"  {k:<{w}}  {g.requests:>6} req  {fmt_count(g.tokens):>6} tok  busy "
              f"{fmt_ms(g.busy_ms)}")
    quick = s.by_route.get("quick")
    if quick:
        p(f"\n{quick.share * 100:.0f}% of your requests went to the quick route.")


def _open(args: argparse.Namespace, ctx: Context) -> int:
    from ..app.usagepage import open_page, range_for_days

    where, opened = open_page(ctx, range_for_days(args.days))
    if where.startswith("file:"):
        print("labrouter: the daemon's front door is not running, so this is a snapshot "
              "(start `labrouter run` for the live page)", file=sys.stderr)
    if opened:
        print(f"opened {where}")
        return 0
    print(f"labrouter: could not start a web browser; open {where}", file=sys.stderr)
    return 1
