"""The usage page: where this lab's compute went, as one server-rendered HTML page.

Owns ``render_page()`` (usage records in, a complete HTML document out: inline SVG
charts, one ``<style>`` block with a light and a dark theme, no script at all), the page's
security headers (``page_headers()``: a content security policy that allows nothing but
that one style block and ``data:`` images, and forbids framing), and ``usage_handler()``,
the aiohttp handler the front door serves at ``/usage?range=today|7d|30d``.

The page is stricter than the front door's APIs about who may read it: it can show prompt
text (when the user logs prompts), so it answers loopback clients with a loopback
``Host`` only, even when ``[api] allow_lan`` opens the APIs to the network.

Rendering is pure (records, the time, a few settings): tests and the benchmark call it
without a server. Must not import desktop packages.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import html
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.usage import UNANSWERED, Summary, UsageRecord, day_of, summarise

#: ?range= values: (label, days read)
RANGES: dict[str, tuple[str, int]] = {"today": ("Today", 1), "7d": ("7 days", 7),
                                      "30d": ("30 days", 30)}
DEFAULT_RANGE = "7d"
RECENT = 25  # rows in "last requests"

#: the usual routes get the same colour on every machine; others take the rest in turn
_ROUTE_COLOURS = {"quick": 1, "code": 2, "reasoning": 3, "vision": 4}
_PALETTE_SIZE = 8


def range_days(key: str) -> int:
    return RANGES.get(key, RANGES[DEFAULT_RANGE])[1]


def range_for_days(days: int) -> str:
    """The page range that shows at least ``days`` days (30 at most)."""
    return "today" if days <= 1 else "7d" if days <= 7 else "30d"


@dataclass(frozen=True)
class PageSettings:
    node: str = ""  # this machine's name
    daily_budget_usd: float = 0.0
    log_prompts: bool = False
    recent: int = RECENT


# ------------------------------------------------------------------ formatting


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def fmt_count(n: float) -> str:
    """1234 -> "1.2k", 3400000 -> "3.4M": figures that fit a tile."""
    n = float(n)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            v = n / limit
            return f"{v:.1f}{suffix}" if v < 100 else f"{v:.0f}{suffix}"
    return f"{n:.0f}"


def fmt_ms(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes = ms / 60_000
    if minutes < 60:
        return f"{minutes:.0f} min"
    return f"{int(minutes // 60)} h {int(minutes % 60):02d} min"


def fmt_usd(usd: float) -> str:
    return f"${usd:.2f}" if usd >= 0.01 or usd == 0 else f"${usd:.4f}"


# ------------------------------------------------------------------ charts (inline SVG)


class _Colours:
    def __init__(self, routes: Iterable[str]) -> None:
        self.index: dict[str, int] = {}
        spare = [i for i in range(1, _PALETTE_SIZE + 1) if i not in _ROUTE_COLOURS.values()]
        for r in routes:
            if r in self.index:
                continue
            if r in _ROUTE_COLOURS:
                self.index[r] = _ROUTE_COLOURS[r]
            else:
                self.index[r] = spare.pop(0) if spare else _PALETTE_SIZE
                spare = spare or [_PALETTE_SIZE]

    def cls(self, route: str) -> str:
        return f"c{self.index.get(route, _PALETTE_SIZE)}"


def axis(peak: float, ticks: int = 4) -> tuple[float, float]:
    """(top, step) of a value axis for ``peak``: a step of 1, 2 or 5 x 10^k, about
    ``ticks`` of them, so that every grid line has a round label."""
    if peak <= 0:
        return 1.0, 0.25
    raw = peak / ticks
    exp = 10.0 ** math.floor(math.log10(raw))
    step = next((m * exp for m in (1, 2, 2.5, 5, 10) if m * exp >= raw * 0.999999), 10 * exp)
    return step * math.ceil(peak / step - 1e-9), step


def stacked_columns(buckets: Sequence[tuple[str, dict[str, int]]], routes: Sequence[str],
                    colours: _Colours, label_every: int = 1) -> str:
    """Columns stacked by route, one per bucket (hour or day), with a light grid."""
    w, h, left, bottom, top = 760, 220, 40, 24, 10
    plot_w, plot_h = w - left - 8, h - bottom - top
    peak = max((sum(v.values()) for _, v in buckets), default=0)
    ymax, step = axis(peak)
    n = max(1, len(buckets))
    slot = plot_w / n
    bar = max(2.0, slot * 0.72)
    out = [f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" '
           f'aria-label="requests per bucket, stacked by route">']
    for i in range(round(ymax / step) + 1):
        value = step * i
        y = top + plot_h - plot_h * value / ymax
        out.append(f'<line class="grid" x1="{left}" x2="{w - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f'{fmt_count(value)}</text>')
    for i, (label, counts) in enumerate(buckets):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        total = sum(counts.values())
        if total:
            detail = ", ".join(f"{counts[r]} {r}" for r in routes if counts.get(r))
            name = f"{label}:00" if label.isdigit() else label
            out.append(f"<g><title>{_e(name)}: {total} request{'s' if total != 1 else ''} "
                       f"({_e(detail)})</title>")
        for route in routes:
            c = counts.get(route, 0)
            if not c:
                continue
            bh = plot_h * c / ymax
            y -= bh
            out.append(f'<rect class="{colours.cls(route)}" x="{x:.1f}" y="{y:.1f}" '
                       f'width="{bar:.1f}" height="{bh:.1f}" rx="1.5"/>')
        if total:
            out.append("</g>")
        if i % label_every == 0:
            out.append(f'<text class="axis" x="{x + bar / 2:.1f}" y="{h - 6}" '
                       f'text-anchor="middle">{_e(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def hbar(parts: Sequence[tuple[float, str]], scale: float, title: str = "") -> str:
    """One horizontal bar made of (value, css class) segments; ``scale`` is the full width."""
    scale = scale or 1.0
    out = ['<svg class="hbar" viewBox="0 0 100 10" preserveAspectRatio="none" '
           'aria-hidden="true">', '<rect class="track" x="0" y="0" width="100" height="10" '
           'rx="2"/>']
    x = 0.0
    for value, cls in parts:
        if value <= 0:
            continue
        wd = 100 * value / scale
        out.append(f'<rect class="{cls}" x="{x:.2f}" y="0" width="{wd:.2f}" height="10"/>')
        x += wd
    if title:
        out.append(f"<title>{_e(title)}</title>")
    out.append("</svg>")
    return "".join(out)


def ttft_bar(median: float, p95: float, scale: float) -> str:
    """A bar to the median time to first token, a whisker out to the p95."""
    scale = scale or 1.0
    m = 100 * median / scale
    p = 100 * p95 / scale
    return ('<svg class="hbar" viewBox="0 0 100 10" preserveAspectRatio="none" '
            'aria-hidden="true"><rect class="track" x="0" y="0" width="100" height="10" '
            f'rx="2"/><rect class="c1" x="0" y="0" width="{m:.2f}" height="10"/>'
            f'<rect class="whisker" x="{m:.2f}" y="4" width="{max(0.0, p - m):.2f}" '
            f'height="2"/><rect class="whisker" x="{max(0.0, p - 0.6):.2f}" y="1" width="0.6" '
            'height="8"/></svg>')


# ------------------------------------------------------------------ the page


_CSS = """
:root{color-scheme:light dark;--bg:#f6f7f9;--card:#fff;--fg:#1d2330;--muted:#667085;
--line:#e4e7ec;--track:#eef0f3;--accent:#2563eb;--on-accent:#fff;--bad:#c2410c;
--c1:#3b82f6;--c2:#10b981;--c3:#a855f7;--c4:#f59e0b;--c5:#ec4899;--c6:#14b8a6;--c7:#84cc16;
--c8:#94a3b8;--peer:#f97316;--budget:#dc2626}
@media (prefers-color-scheme:dark){:root{--bg:#0f1216;--card:#181c22;--fg:#e6e8ec;
--muted:#9aa3b2;--line:#2a3038;--track:#232830;--accent:#60a5fa;--on-accent:#0f1216;--bad:#fb923c;
--c1:#60a5fa;--c2:#34d399;--c3:#c084fc;--c4:#fbbf24;--c5:#f472b6;--c6:#2dd4bf;--c7:#a3e635;
--c8:#94a3b8;--peer:#fb923c;--budget:#f87171}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:1120px;margin:0 auto;padding:20px 24px 40px}
header{display:flex;align-items:baseline;justify-content:space-between;flex-wrap:wrap;gap:8px}
h1{font-size:20px;margin:0}h1 small{color:var(--muted);font-weight:400;font-size:14px}
h2{font-size:15px;margin:0 0 10px}
nav.off{display:none}
nav a{display:inline-block;padding:4px 12px;border:1px solid var(--line);border-radius:999px;
color:var(--fg);text-decoration:none;margin-left:6px;background:var(--card)}
nav a.on{background:var(--accent);border-color:var(--accent);color:var(--on-accent)}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;
margin:16px 0}
.tile,.card{background:var(--card);border:1px solid var(--line);border-radius:10px}
.tile{padding:12px 14px}.tile b{display:block;font-size:22px;font-weight:600}
.tile span{color:var(--muted);font-size:12px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:12px;margin-top:12px}
@media (max-width:820px){.grid2{grid-template-columns:1fr}}
.card{padding:14px 16px;margin-top:12px;overflow:hidden}.grid2>.card{margin-top:0}
.col>.card:first-child{margin-top:0}.grid2{align-items:start}
.muted{color:var(--muted)}.note{color:var(--muted);font-size:12px;margin:8px 0 0}
svg.chart{width:100%;height:auto;display:block}
svg.hbar{width:100%;height:12px;display:block}
.grid{stroke:var(--line);stroke-width:1}.axis{fill:var(--muted);font-size:11px}
.track{fill:var(--track)}.whisker{fill:var(--muted)}.budget{stroke:var(--budget);
stroke-width:1.5;stroke-dasharray:5 4}
.c1{fill:var(--c1);background:var(--c1)}.c2{fill:var(--c2);background:var(--c2)}
.c3{fill:var(--c3);background:var(--c3)}.c4{fill:var(--c4);background:var(--c4)}
.c5{fill:var(--c5);background:var(--c5)}.c6{fill:var(--c6);background:var(--c6)}
.c7{fill:var(--c7);background:var(--c7)}.c8{fill:var(--c8);background:var(--c8)}
.peer{fill:var(--peer);background:var(--peer)}
.legend{display:flex;flex-wrap:wrap;gap:14px;margin:0 0 8px;font-size:12px;color:var(--muted)}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;
vertical-align:-1px}
table{width:100%;border-collapse:collapse}
td,th{padding:5px 6px;text-align:left;vertical-align:middle;border-top:1px solid var(--line)}
tr:first-child td,thead th{border-top:0}
th{font-weight:600;color:var(--muted);font-size:12px}
td.num,th.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.bar{width:34%;min-width:90px}td.where{font-size:12px;line-height:1.5}
.sub{color:var(--muted);font-size:11px;white-space:nowrap}
.flow{margin:4px 0}.flow b{font-weight:600}
.bad{color:var(--bad)}
.prompt{color:var(--muted);max-width:280px;overflow:hidden;text-overflow:ellipsis;
white-space:nowrap}
.recent td{font-size:13px}
.empty{padding:40px;text-align:center;color:var(--muted)}
footer{margin-top:18px;color:var(--muted);font-size:12px}
"""
_CSS_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()


def page_headers() -> dict[str, str]:
    """Headers for the page: nothing runs, nothing loads from elsewhere, no framing."""
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": (f"default-src 'none'; style-src '{_CSS_HASH}'; "
                                    "img-src data:; frame-ancestors 'none'; base-uri 'none'; "
                                    "form-action 'none'"),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def _buckets(records: Sequence[UsageRecord], range_key: str, now: float
             ) -> tuple[list[tuple[str, dict[str, int]]], int]:
    """(label, serving route -> own requests) per hour of today or per day of the range,
    empty buckets included, and how often to print a label."""
    own = [r for r in records if not r.served_for]
    if range_key == "today":
        hours: list[dict[str, int]] = [{} for _ in range(24)]
        for r in own:
            h = time.localtime(r.ts).tm_hour
            hours[h][r.route or "?"] = hours[h].get(r.route or "?", 0) + 1
        return [(f"{h:02d}", hours[h]) for h in range(24)], 3
    days = range_days(range_key)
    today = dt.date.fromtimestamp(now)
    labels = [today - dt.timedelta(days=days - 1 - i) for i in range(days)]
    by_day: dict[str, dict[str, int]] = {d.isoformat(): {} for d in labels}
    for r in own:
        bucket = by_day.get(day_of(r.ts))
        if bucket is not None:
            bucket[r.route or "?"] = bucket.get(r.route or "?", 0) + 1
    fmt = "%a %d" if days <= 7 else "%d %b"
    return [(d.strftime(fmt), by_day[d.isoformat()]) for d in labels], (1 if days <= 7 else 5)


def _legend(routes: Sequence[str], colours: _Colours) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i class="{colours.cls(r)}"></i>{_e(r)}</span>' for r in routes) + "</div>"


def _tiles(s: Summary, settings: PageSettings, spent_today: float) -> str:
    answered = f"{s.answered / s.requests * 100:.0f}% answered" if s.requests else "answered"
    tiles = [
        ("requests", str(s.requests), answered),
        ("tokens", fmt_count(s.tokens), f"{s.tokens:,} tokens"),
        ("fallovers", str(s.fallovers), "fell over to a later choice"),
        ("served_for", str(s.served_for_requests), "served for other machines"),
    ]
    if settings.daily_budget_usd:
        tiles.append(("spend", fmt_usd(s.cost_usd),
                      f"cloud; today {fmt_usd(spent_today)} of "
                      f"{fmt_usd(settings.daily_budget_usd)}"))
    else:
        tiles.append(("spend", fmt_usd(s.cost_usd), "cloud (no daily budget set)"))
    return '<section class="tiles">' + "".join(
        f'<div class="tile" data-figure="{k}"><b>{_e(v)}</b><span>{_e(sub)}</span></div>'
        for k, v, sub in tiles) + "</section>"


def _routes_card(s: Summary, colours: _Colours) -> str:
    rows = []
    for route, g in s.by_route.items():
        rows.append(f'<tr><td>{_e(route)}</td><td class="bar">'
                    f'{hbar([(g.share, colours.cls(route))], 1.0)}</td>'
                    f'<td class="num">{g.share * 100:.1f}%</td>'
                    f'<td class="num">{g.requests}</td>'
                    f'<td class="num">{fmt_count(g.tokens)} tok</td>'
                    f'<td class="num">{fmt_ms(g.median_ms)}</td></tr>')
    return ('<div class="card"><h2>Share per route <span class="muted">(the route that '
            'answered)</span></h2><table><thead><tr><th>route</th><th></th>'
            '<th class="num">share</th><th class="num">requests</th><th class="num">tokens'
            '</th><th class="num">median</th></tr></thead><tbody>' + "".join(rows)
            + "</tbody></table></div>")


def _flows_card(s: Summary, colours: _Colours) -> str:
    rows = []
    for route, flow in s.flows.items():
        scale = max(1, flow.requests)
        parts = [(n, colours.cls(r)) for (r, _m), n in flow.answered.items()]
        if flow.unanswered:
            parts.append((flow.unanswered, "track"))
        where = [f"{n} {_e(m)}" + (f' <span class="bad">({_e(r)} route)</span>'
                                   if r != route else "")
                 for (r, m), n in flow.answered.items()]
        if flow.unanswered:
            where.append(f'<span class="bad">{flow.unanswered} unanswered</span>')
        rows.append(f'<tr><td>{_e(route)}</td><td class="num">{flow.requests}</td>'
                    f'<td class="bar">{hbar(parts, scale)}</td>'
                    f'<td class="where">{"<br>".join(where)}</td></tr>')
    crossings = []
    for c, r, n, _why in s.crossings():
        reasons = s.flows[c].reasons
        why = ", ".join(f"{_e(k)}: {v}" if len(reasons) > 1 else _e(k)
                        for k, v in reasons.items())
        crossings.append(f'<p class="flow"><b>{_e(c)}</b>: {s.flows[c].requests} requests, '
                         f'<b>{n}</b> answered by the {_e(r)} model'
                         + (f' <span class="muted">({why})</span>' if why else "") + "</p>")
    return ('<div class="card"><h2>Where each route was answered <span class="muted">'
            '(classified route &rarr; serving model)</span></h2>' + "".join(crossings)
            + '<table><thead><tr><th>classified</th><th class="num">requests</th><th></th>'
            '<th>answered by</th></tr></thead><tbody>' + "".join(rows)
            + "</tbody></table></div>")


def _machines_card(s: Summary) -> str:
    scale = max((g.tokens + g.peer_tokens for g in s.by_node.values()), default=0)
    rows = []
    for node, g in s.by_node.items():
        peer = (f'<div class="sub">{fmt_count(g.peer_tokens)} tok, '
                f'{fmt_ms(g.peer_busy_ms)} for peers</div>') if g.peer_requests else ""
        rows.append(f'<tr><td>{_e(node)}{peer}</td><td class="bar">'
                    f'{hbar([(g.tokens, "c1"), (g.peer_tokens, "peer")], scale)}</td>'
                    f'<td class="num">{fmt_count(g.tokens + g.peer_tokens)} tok</td>'
                    f'<td class="num">{fmt_ms(g.busy_ms + g.peer_busy_ms)}</td></tr>')
    peers = ""
    if s.served_for:
        peers = '<p class="note">Served for others: ' + ", ".join(
            f"{_e(p)} {g.requests} requests ({fmt_count(g.tokens)} tokens, "
            f"{fmt_ms(g.busy_ms)})" for p, g in s.served_for.items()) + "</p>"
    return ('<div class="card"><h2>Tokens and busy time per machine</h2>'
            '<div class="legend"><span><i class="c1"></i>your requests</span><span>'
            '<i class="peer"></i>work for other machines</span></div><table><thead><tr>'
            '<th>machine</th><th></th><th class="num">tokens</th><th class="num">busy</th>'
            '</tr></thead><tbody>' + "".join(rows) + "</tbody></table>" + peers
            + "</div>")


def _ttft_card(s: Summary) -> str:
    models = [(m, g) for m, g in s.by_model.items() if g.ttfts]
    scale = max((g.p95_ttft_ms for _, g in models), default=0)
    rows = "".join(
        f'<tr><td>{_e(m)}</td><td class="bar">{ttft_bar(g.median_ttft_ms, g.p95_ttft_ms, scale)}'
        f'</td><td class="num">{fmt_ms(g.median_ttft_ms)}</td>'
        f'<td class="num">{fmt_ms(g.p95_ttft_ms)}</td><td class="num">{len(g.ttfts)}</td></tr>'
        for m, g in models)
    return ('<div class="card"><h2>Time to first token per model</h2><table><thead><tr>'
            '<th>model</th><th></th><th class="num">median</th><th class="num">p95</th>'
            '<th class="num">answers</th></tr></thead><tbody>' + rows + "</tbody></table>"
            '<p class="note">Bar: median; line: out to the 95th percentile.</p></div>')


def _fallovers_card(s: Summary) -> str:
    if not s.fallover_reasons:
        body = '<p class="muted">No request fell over: every first choice answered.</p>'
    else:
        scale = max(s.fallover_reasons.values())
        body = "<table><tbody>" + "".join(
            f'<tr><td>{_e(why)}</td><td class="bar">{hbar([(n, "c4")], scale)}</td>'
            f'<td class="num">{n}</td></tr>' for why, n in s.fallover_reasons.items()
        ) + "</tbody></table>"
    pct = f" ({s.fallovers / s.requests * 100:.0f}% of requests)" if s.requests else ""
    return (f'<div class="card"><h2>Fallovers: {s.fallovers}{pct}</h2>{body}'
            '<p class="note">A request can fall over for more than one reason.</p></div>')


def _spend_card(s: Summary, settings: PageSettings, buckets: Sequence[str],
                range_key: str, spent_today: float) -> str:
    budget = settings.daily_budget_usd
    if range_key == "today":
        if not budget:
            return ('<div class="card"><h2>Cloud spend</h2><p>' + fmt_usd(spent_today)
                    + ' today. <span class="muted">No daily budget is set ([budget] '
                    'daily_usd), so cloud servers are not used.</span></p></div>')
        bar = hbar([(min(spent_today, budget), "c4")], budget)
        return (f'<div class="card"><h2>Cloud spend against the daily budget</h2>{bar}'
                f'<p>{fmt_usd(spent_today)} of {fmt_usd(budget)} today '
                f'({spent_today / budget * 100:.0f}%).</p></div>')
    w, h, left, bottom, top = 760, 150, 46, 22, 10
    plot_w, plot_h = w - left - 8, h - bottom - top
    values = [s.day_cost.get(d, 0.0) for d in buckets]
    ymax, step = axis(max([*values, budget * 1.1, 0.01]), 2)
    slot = plot_w / max(1, len(values))
    bar_w = max(2.0, slot * 0.6)
    out = [f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="cloud spend per '
           'day">']
    for i in range(round(ymax / step) + 1):
        y = top + plot_h - plot_h * step * i / ymax
        out.append(f'<line class="grid" x1="{left}" x2="{w - 8}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f'{fmt_usd(step * i)}</text>')
    for i, v in enumerate(values):
        bh = plot_h * v / ymax
        x = left + i * slot + (slot - bar_w) / 2
        out.append(f'<rect class="c6" x="{x:.1f}" y="{top + plot_h - bh:.1f}" '
                   f'width="{bar_w:.1f}" height="{bh:.1f}" rx="1.5"><title>{buckets[i]}: '
                   f'{fmt_usd(v)}</title></rect>')
        if i % (1 if len(values) <= 7 else 5) == 0:
            day = dt.date.fromisoformat(buckets[i])
            label = day.strftime("%a %d" if len(values) <= 7 else "%d %b")
            out.append(f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{h - 6}" '
                       f'text-anchor="middle">{label}</text>')
    if budget:
        y = top + plot_h - plot_h * budget / ymax
        out.append(f'<line class="budget" x1="{left}" x2="{w - 8}" y1="{y:.1f}" y2="{y:.1f}">'
                   f'<title>daily budget {fmt_usd(budget)}</title></line>')
    out.append("</svg>")
    over = sum(1 for v in values if budget and v > budget)
    note = (f"Dashed line: the daily budget, {fmt_usd(budget)}." if budget else
            "No daily budget is set ([budget] daily_usd), so cloud servers are not used.")
    if over:
        note += f' <span class="bad">{over} day(s) over it.</span>'
    return (f'<div class="card"><h2>Cloud spend per day: {fmt_usd(s.cost_usd)} in all</h2>'
            + "".join(out) + f'<p class="note">{note}</p></div>')


def _recent_card(records: Sequence[UsageRecord], settings: PageSettings) -> str:
    last = list(records[-settings.recent:])[::-1]
    if not last:
        return ""
    show_prompt = settings.log_prompts or any(r.prompt for r in last)
    rows = []
    for r in last:
        when = time.strftime("%d %b %H:%M", time.localtime(r.ts))
        route = _e(r.route or "?")
        if r.classified_route and r.classified_route != r.route:
            route = f'{_e(r.classified_route)} &rarr; <span class="bad">{route}</span>'
        if r.served_for:
            route += f' <span class="muted">for {_e(r.served_for)}</span>'
        outcome = _e(r.outcome) + (f" ({_e(r.finish_reason)})"
                                   if r.finish_reason not in ("", "stop") else "")
        cls = ' class="bad"' if r.outcome in UNANSWERED else ""
        tokens = r.prompt_tokens + r.completion_tokens
        row = (f"<tr><td>{when}</td><td>{route}</td><td>{_e(r.node or '-')}</td>"
               f"<td>{_e(r.model or '-')}</td><td class=\"num\">{tokens}</td>"
               f"<td class=\"num\">{fmt_ms(r.ttft_ms)}</td>"
               f"<td class=\"num\">{fmt_ms(r.duration_ms)}</td><td{cls}>{outcome}</td>")
        if show_prompt:
            text = (r.prompt or "").replace("\n", " ")
            row += f'<td class="prompt" title="{_e(text[:500])}">{_e(text[:120])}</td>'
        rows.append(row + "</tr>")
    head = ("<th>when</th><th>route</th><th>machine</th><th>model</th>"
            '<th class="num">tokens</th><th class="num">first token</th>'
            '<th class="num">total</th><th>outcome</th>' + ("<th>prompt</th>"
                                                            if show_prompt else ""))
    return (f'<div class="card recent"><h2>Last {len(last)} requests</h2><table><thead><tr>'
            f"{head}</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")


def render_page(records: Sequence[UsageRecord], range_key: str, now: float,
                settings: PageSettings | None = None, skipped: int = 0,
                spent_today: float | None = None) -> str:
    """The whole page for ``records`` (oldest first, already limited to the range)."""
    settings = settings or PageSettings()
    if range_key not in RANGES:
        range_key = DEFAULT_RANGE
    s = summarise(records)
    if spent_today is None:
        today = day_of(now)
        spent_today = s.day_cost.get(today, 0.0)
    label = RANGES[range_key][0]
    nav = "".join(f'<a href="?range={k}"' + (' class="on"' if k == range_key else "")
                  + f">{_e(v[0])}</a>" for k, v in RANGES.items())
    title = "labrouter usage" + (f" &middot; {_e(settings.node)}" if settings.node else "")
    head = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><meta name="color-scheme" '
            f'content="light dark"><title>{title}</title><style>{_CSS}</style></head><body>'
            f'<main><header><h1>{title} <small>{_e(label.lower())}</small></h1>'
            f"<nav>{nav}</nav></header>")
    foot = (f'<footer>Generated {time.strftime("%Y-%m-%d %H:%M", time.localtime(now))} from '
            "this machine's usage log"
            + (f"; {skipped} unreadable line(s) skipped" if skipped else "")
            + ". <code>labrouter stats</code> shows the same in a terminal.</footer></main>"
            "</body></html>")
    if not records:
        return (head + f'<div class="card empty">No requests {_e(_range_phrase(range_key))}.'
                "</div>" + foot)
    routes = list(s.by_route) or ["quick"]
    colours = _Colours(routes + list(s.flows))
    buckets, every = _buckets(records, range_key, now)
    what = "hour" if range_key == "today" else "day"
    days = [] if range_key == "today" else [
        (dt.date.fromtimestamp(now) - dt.timedelta(days=range_days(range_key) - 1 - i))
        .isoformat() for i in range(range_days(range_key))]
    parts = [
        head, _tiles(s, settings, spent_today),
        f'<div class="card"><h2>Requests per {what}, by the route that answered</h2>'
        + _legend(routes, colours) + stacked_columns(buckets, routes, colours, every)
        + "</div>",
        '<div class="grid2"><div class="col">', _routes_card(s, colours), _fallovers_card(s),
        '</div><div class="col">', _flows_card(s, colours), "</div></div>",
        '<div class="grid2">', _machines_card(s), _ttft_card(s), "</div>",
        _spend_card(s, settings, days, range_key, spent_today),
        _recent_card(records, settings), foot,
    ]
    return "".join(parts)


def _range_phrase(range_key: str) -> str:
    return "today" if range_key == "today" else f"in the last {range_days(range_key)} days"


# ------------------------------------------------------------------ serving


def is_local_request(host: str, remote: str | None) -> bool:
    from .frontdoor.access import host_of, is_loopback

    return is_loopback(host_of(host)) and remote is not None and is_loopback(remote)


def usage_handler(read: Callable[[int], tuple[list[UsageRecord], int]],
                  settings: Callable[[], PageSettings],
                  clock: Callable[[], float] = time.time) -> Callable[[Any], Any]:
    """The aiohttp handler for ``GET /usage``: reads the log in a worker thread (a month of
    a busy lab is tens of thousands of lines), renders, and sends the page."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.StreamResponse:
        if not is_local_request(request.host or "", request.remote):
            return web.Response(status=403, text="forbidden: the usage page is for this "
                                                 "machine only\n")
        range_key = request.query.get("range", DEFAULT_RANGE)
        if range_key not in RANGES:
            range_key = DEFAULT_RANGE

        def build() -> str:
            records, bad = read(range_days(range_key))
            return render_page(records, range_key, clock(), settings(), skipped=bad)

        body = await asyncio.to_thread(build)
        return web.Response(body=body.encode("utf-8"), headers=page_headers())

    return handler


def settings_from(config: Any) -> PageSettings:
    return PageSettings(node=config.node.name, daily_budget_usd=config.budget.daily_usd,
                        log_prompts=config.usage.log_prompts)


def page_url(config: Any, range_key: str = DEFAULT_RANGE, timeout: float = 1.0) -> str | None:
    """The live page's address when this machine's front door answers as labrouter (not
    some other program on the port), else None. Talks to loopback only, no proxy."""
    import json
    import urllib.request

    from .frontdoor.access import is_loopback

    api = config.api
    if not api.enabled:
        return None
    host = api.bind if is_loopback(api.bind) else "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    base = f"http://{host}:{api.port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(base + "/api/version", timeout=timeout) as resp:
            data = json.loads(resp.read(65536))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "labrouter" not in data:
        return None
    return f"{base}/usage?range={range_key}"


def write_snapshot(ctx: Any, range_key: str = DEFAULT_RANGE) -> str:
    """The page as a file in the data folder (private: it may hold prompts); its URI."""
    from .paths import write_private
    from .usagelog import UsageLog

    records, bad = UsageLog(ctx.paths.data_dir, ctx.config.usage.retention_days).read(
        range_days(range_key))
    page = render_page(records, range_key, time.time(), settings_from(ctx.config), skipped=bad)
    # a file has no ?range=: its range links would lead nowhere, so they are left out
    page = page.replace("<nav>", '<nav class="off">', 1)
    path = ctx.paths.data_dir / "usage.html"
    write_private(path, page.encode("utf-8"))
    return str(path.as_uri())


def page_address(ctx: Any, range_key: str = DEFAULT_RANGE) -> str:
    """Where the page is: the daemon's live page when its front door answers, else a
    snapshot file (its ``file:`` URI). Blocking: run it in a thread from the event loop."""
    return page_url(ctx.config, range_key) or write_snapshot(ctx, range_key)


def open_page(ctx: Any, range_key: str = DEFAULT_RANGE,
              browser: Callable[[str], bool] | None = None) -> tuple[str, bool]:
    """Open the usage page in the web browser (see ``page_address``). Returns (what was
    opened, whether a browser started). Blocking."""
    import webbrowser

    url = page_address(ctx, range_key)
    open_url = browser or webbrowser.open
    try:
        ok = bool(open_url(url))
    except Exception:  # noqa: BLE001 - a broken browser setup: say where the page is
        ok = False
    return url, ok
