"""The configuration schema, its defaults, and validation.

Owns the frozen dataclasses that describe ``config.toml`` and the function that turns
parsed TOML (a dict) into them, with one clear message per mistake: the file, the line
when it can be found, the key and what is expected.

Reading the file and the environment is the caller's job (``app/``): this module gets
text and an environment mapping, so it stays pure. Standard library only.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, get_args, get_origin, get_type_hints

from .errors import ConfigError
from .hotkeys import parse_chord

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
CLUSTER_PORT = 47811  # UDP announcements
RELAY_PORT = 47812  # HTTPS relay between daemons
API_PORT = 47813  # local front door (Ollama + OpenAI APIs)
BUILTIN_ROUTES = ("quick", "code", "reasoning", "vision")


@dataclass(frozen=True)
class NodeConfig:
    name: str = ""  # empty: the host name, filled in by the loader
    unload_on_pause: bool = True
    pause_when_running: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServerConfig:
    url: str = DEFAULT_OLLAMA_URL
    kind: str = "ollama"  # "ollama" or "openai"
    name: str = ""  # a short label; derived from the URL when empty
    api_key_env: str = ""
    cost_input_per_1k: float = 0.0
    cost_output_per_1k: float = 0.0
    models: tuple[str, ...] = ()  # openai servers that cannot list their models

    @property
    def is_cloud(self) -> bool:
        return self.cost_input_per_1k > 0 or self.cost_output_per_1k > 0

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return re.sub(r"^https?://", "", self.url).rstrip("/")


@dataclass(frozen=True)
class RouteConfig:
    models: tuple[str, ...] = ()
    fallback: str = ""
    instruction: str = ""
    escalate_to: str = ""
    allow_cloud: bool = False
    # the longest answer to a desktop question on this route, in tokens (0: no limit); a
    # runaway answer otherwise blocks the desktop for minutes; a cut answer says so
    desktop_max_tokens: int = 1024


@dataclass(frozen=True)
class ClassifierConfig:
    # route -> {keyword or phrase: weight}
    keywords: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # focused application (window class or process name) -> route it leans to, "" for none;
    # merged over the default map in core/classify_data.py
    apps: Mapping[str, str] = field(default_factory=dict)
    # below this calibrated confidence the quick model in memory is asked which of the
    # classifier's two best routes a prompt is (core/settle.py); 0: never (the default,
    # measured in bench/settle.py)
    settle_below: float = 0.0
    # seconds the quick model has for that one-word answer; later, the classifier decides
    settle_timeout: float = 1.5


@dataclass(frozen=True)
class ClusterConfig:
    port: int = CLUSTER_PORT
    bind: str = "0.0.0.0"
    peers: tuple[str, ...] = ()
    broadcast: bool = True
    multicast6: bool = False
    interval: float = 1.0


@dataclass(frozen=True)
class TimeoutConfig:
    connect: float = 3.0
    first_token: float = 60.0  # a cold 30B load can take tens of seconds
    gap: float = 30.0
    total: float = 600.0


@dataclass(frozen=True)
class RoutingConfig:
    #: learn first-token and between-token deadlines from each server's own answers
    #: (the [timeouts] become ceilings); off: the [timeouts] alone
    adaptive_deadlines: bool = True
    #: when the first choice has no token by its usual time, ask the next one in parallel
    #: and keep whichever answers first (at most one hedge per request)
    hedge: bool = True
    #: seconds before hedging; 0: learned (1.5x the server's p95 time to first token)
    hedge_after: float = 0.0
    #: a stream that stalls mid-answer is continued by the next model from the words
    #: already sent; off: the next model starts the answer over
    continue_stalled: bool = True


@dataclass(frozen=True)
class BudgetConfig:
    daily_usd: float = 0.0  # 0: cloud servers are never used


@dataclass(frozen=True)
class HotkeyConfig:
    ask: str = ""  # empty: the platform default (see desktop/hotkey.py)


@dataclass(frozen=True)
class DesktopConfig:
    copy_answer: str = "when-shortened"  # never | when-shortened | always
    # a press while a request runs: ask (offer to cancel it: press again to do so) |
    # cancel (at once) | queue (ask after it, at most 3 waiting)
    busy: str = "ask"
    history: int = 10  # recent answers kept across restarts (0: none kept on disk)
    # how an answer is shown: a window that streams it (notifications where no window can
    # be shown) | notifications only
    answer: str = "window"


@dataclass(frozen=True)
class UsageConfig:
    log_prompts: bool = False
    retention_days: int = 90


@dataclass(frozen=True)
class RelayConfig:
    enabled: bool = True
    port: int = RELAY_PORT
    max_concurrent_per_model: int = 2


@dataclass(frozen=True)
class ApiConfig:
    enabled: bool = True
    bind: str = "127.0.0.1"
    port: int = API_PORT
    allow_lan: bool = False  # a bind off loopback is refused unless this is on
    #: web pages (``scheme://host:port``) allowed to call the front door; none by default
    allowed_origins: tuple[str, ...] = ()


def default_routes() -> dict[str, RouteConfig]:
    """Routes that work for a typical home lab with no configuration."""
    return {
        "quick": RouteConfig(
            models=("qwen3:4b", "gemma3:4b", "llama3.2:3b", "phi4-mini", "qwen2.5:3b",
                    "qwen3:1.7b", "llama3.2:1b", "gemma3:1b", "smollm2"),
            instruction="Summarise this concisely:",
        ),
        "code": RouteConfig(
            models=("qwen3-coder:30b", "qwen2.5-coder:32b", "qwen2.5-coder:14b",
                    "deepseek-coder-v2:16b", "qwen2.5-coder:7b", "codellama:13b",
                    "qwen2.5-coder:3b", "qwen2.5-coder:1.5b"),
            fallback="quick",
            instruction="Explain this code and point out any bugs:",
            desktop_max_tokens=2048,
        ),
        "reasoning": RouteConfig(
            models=("deepseek-r1:32b", "qwq", "deepseek-r1:14b", "qwen3:14b",
                    "deepseek-r1:8b", "qwen3:8b", "phi4-reasoning"),
            fallback="quick",
            instruction="Work through this step by step:",
            desktop_max_tokens=4096,
        ),
        "vision": RouteConfig(
            models=("qwen2.5vl:7b", "llama3.2-vision", "gemma3:12b", "minicpm-v",
                    "granite3.2-vision:2b", "llava:7b", "moondream"),
            fallback="quick",
            instruction="Describe this image:",
        ),
    }


@dataclass(frozen=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    servers: tuple[ServerConfig, ...] = ()
    routes: Mapping[str, RouteConfig] = field(default_factory=default_routes)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    hotkey: HotkeyConfig = field(default_factory=HotkeyConfig)
    desktop: DesktopConfig = field(default_factory=DesktopConfig)
    usage: UsageConfig = field(default_factory=UsageConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    #: where it came from, for messages ("" for built-in defaults)
    source: str = ""

    def route(self, name: str) -> RouteConfig:
        return self.routes.get(name, RouteConfig())


# ---------------------------------------------------------------- validation

_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("servers", "kind"): ("ollama", "openai"),
    ("desktop", "copy_answer"): ("never", "when-shortened", "always"),
    ("desktop", "busy"): ("ask", "cancel", "queue"),
    ("desktop", "answer"): ("window", "notification"),
}
_POSITIVE = {("cluster", "interval"), ("timeouts", "connect"), ("timeouts", "first_token"),
             ("timeouts", "gap"), ("timeouts", "total"), ("usage", "retention_days"),
             ("relay", "max_concurrent_per_model")}
#: timing and size keys: (low, high, unit) - the cluster interval between the receivers'
#: clamps (docs/protocol.md: 50 ms .. 60 s), the rest where a value still makes sense
_RANGES: dict[tuple[str, str], tuple[float, float, str]] = {
    ("cluster", "interval"): (0.05, 60.0, "s"),
    ("timeouts", "connect"): (0.05, 300.0, "s"),
    ("timeouts", "first_token"): (0.1, 3600.0, "s"),
    ("timeouts", "gap"): (0.1, 3600.0, "s"),
    ("timeouts", "total"): (0.1, 86400.0, "s"),
    ("usage", "retention_days"): (1, 36500, " days"),
    ("relay", "max_concurrent_per_model"): (1, 1024, ""),
    ("classifier", "settle_below"): (0.0, 1.0, ""),
    ("classifier", "settle_timeout"): (0.1, 30.0, " s"),
}
_PORTS = {("cluster", "port"), ("relay", "port"), ("api", "port")}
_NON_NEGATIVE = {("routing", "hedge_after"), ("servers", "cost_input_per_1k"),
                 ("servers", "cost_output_per_1k"),
                 ("budget", "daily_usd")}
_URL_RE = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_ROUTE_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class _Locator:
    """Finds the line of a key in the TOML text, for messages ("when known")."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def find(self, table: str, key: str, index: int | None = None) -> int | None:
        header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
        keyre = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        current = ""
        seen = -1
        for no, line in enumerate(self.lines, 1):
            m = header.match(line)
            if m:
                current = m.group(1).replace('"', "").replace(" ", "")
                if current == table:
                    seen += 1
                continue
            if current == table and keyre.match(line) and (index is None or seen == index):
                return no
        for no, line in enumerate(self.lines, 1):  # dotted keys or inline tables
            if re.search(r"(^|[\s.{,])" + re.escape(key) + r"\s*=", line):
                return no
        return None


def key_line(text: str, table: str, key: str) -> int | None:
    """The line of ``key`` in ``[table]`` of config text (for messages), None if absent."""
    return _Locator(text).find(table, key)


def _where(source: str, line: int | None) -> str:
    src = source or "config"
    return f"{src}:{line}" if line else src


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is tuple:
        return "a list of " + {str: "strings", int: "integers", float: "numbers"}.get(
            get_args(tp)[0], "values")
    return {str: "a string", int: "an integer", float: "a finite number",
            bool: "true or false"}.get(tp, str(tp))


def _convert(value: Any, tp: Any) -> Any:
    """Convert a TOML value to the field type; raise TypeError when it does not fit."""
    origin = get_origin(tp)
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError
        (inner,) = get_args(tp)[:1]
        return tuple(_convert(v, inner) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        # TOML allows nan and inf: a nan budget would pass every `<= 0` check and make
        # cloud spend unlimited, a nan timeout would never fire
        if not math.isfinite(value):
            raise TypeError
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    raise TypeError


class _Builder:
    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.loc = _Locator(text)

    def fail(self, table: str, key: str, msg: str, index: int | None = None) -> ConfigError:
        line = self.loc.find(table, key, index) if key else None
        dotted = f"{table}.{key}" if key else table
        return ConfigError(
            f"{_where(self.source, line)}: {dotted}: {msg}",
            hint="Fix the value in the config file, then run `labrouter config validate`.",
        )

    def section(self, cls: type, table: str, data: Any, index: int | None = None) -> Any:
        if not isinstance(data, dict):
            raise self.fail(table, "", f"expected a table ([{table}]), got {type(data).__name__}")
        hints = get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        schema_table = table.split(".")[0]
        for key, value in data.items():
            if key not in known:
                expected = ", ".join(sorted(known))
                raise self.fail(table, key, f"unknown key; expected one of: {expected}", index)
            try:
                conv = _convert(value, hints[key])
            except TypeError:
                raise self.fail(
                    table, key, f"expected {_type_name(hints[key])}, got {value!r}", index
                ) from None
            self.check_value(schema_table, key, conv, table, index)
            kwargs[key] = conv
        return cls(**kwargs)

    def check_value(self, schema_table: str, key: str, value: Any, table: str,
                    index: int | None) -> None:
        k = (schema_table, key)
        if k in _CHOICES and value not in _CHOICES[k]:
            raise self.fail(table, key, f"expected one of {', '.join(_CHOICES[k])}, got {value!r}",
                            index)
        if k in _POSITIVE and value <= 0:
            raise self.fail(table, key, f"expected a number above 0, got {value!r}", index)
        if k in _RANGES and not _RANGES[k][0] <= value <= _RANGES[k][1]:
            lo, hi, unit = _RANGES[k]
            raise self.fail(table, key, f"expected {lo:g}{unit} to {hi:g}{unit}, got {value!r}",
                            index)
        if k in _NON_NEGATIVE and value < 0:
            raise self.fail(table, key, f"expected 0 or more, got {value!r}", index)
        if k in _PORTS and not 1 <= value <= 65535:
            raise self.fail(table, key, f"expected a port from 1 to 65535, got {value!r}", index)
        if k == ("servers", "url") and not _URL_RE.match(value):
            raise self.fail(table, key, f"expected an http:// or https:// URL, got {value!r}",
                            index)
        if k == ("hotkey", "ask") and value:
            try:  # as the hotkey backend (pynput) will parse it
                parse_chord(value)
            except ValueError as exc:
                raise self.fail(table, key, str(exc), index) from None


def parse_config(text: str, source: str = "", env: Mapping[str, str] | None = None,
                 hostname: str = "") -> Config:
    """Parse and validate config text. Raises ConfigError with file:line on any mistake."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(
            f"{_where(source, int(m.group(1)) if m else None)}: not valid TOML: {exc}",
            hint="Check the quoting and brackets on that line (TOML: https://toml.io).",
        ) from None
    return build_config(data, source=source, text=text, env=env, hostname=hostname)


def build_config(data: Mapping[str, Any], source: str = "", text: str = "",
                 env: Mapping[str, str] | None = None, hostname: str = "") -> Config:
    env = env or {}
    b = _Builder(source, text)
    simple: dict[str, type] = {
        "node": NodeConfig, "cluster": ClusterConfig, "timeouts": TimeoutConfig,
        "routing": RoutingConfig,
        "budget": BudgetConfig, "hotkey": HotkeyConfig, "desktop": DesktopConfig,
        "usage": UsageConfig, "relay": RelayConfig, "api": ApiConfig,
    }
    known_top = set(simple) | {"servers", "routes", "classifier"}
    kwargs: dict[str, Any] = {}
    for top, value in data.items():
        if top not in known_top:
            line = None
            for no, ln in enumerate(b.loc.lines, 1):
                if re.match(r"^\s*\[\[?\s*" + re.escape(top) + r"\b", ln) or re.match(
                        r"^\s*" + re.escape(top) + r"\s*=", ln):
                    line = no
                    break
            raise ConfigError(
                f"{_where(source, line)}: [{top}]: unknown section; expected one of: "
                f"{', '.join(sorted(known_top))}",
                hint="See docs/config.md for every section and key.",
            )
        if top in simple:
            kwargs[top] = b.section(simple[top], top, value)
    if "servers" in data:
        servers = data["servers"]
        if not isinstance(servers, list):
            raise b.fail("servers", "", "expected an array of tables ([[servers]])")
        kwargs["servers"] = tuple(
            b.section(ServerConfig, "servers", s, index=i) for i, s in enumerate(servers)
        )
    routes = default_routes()
    if "routes" in data:
        rdata = data["routes"]
        if not isinstance(rdata, dict):
            raise b.fail("routes", "", "expected tables [routes.<name>]")
        for name, rv in rdata.items():
            if not _ROUTE_NAME_RE.match(name):
                raise b.fail(f"routes.{name}", "", "a route name is lower-case letters, digits,"
                             " - and _, starting with a letter")
            base = routes.get(name, RouteConfig())
            given = b.section(RouteConfig, f"routes.{name}", rv)
            # keys the user did not write keep the built-in default of that route
            merged = {f.name: getattr(given if f.name in rv else base, f.name)
                      for f in fields(RouteConfig)}
            routes[name] = RouteConfig(**merged)
    kwargs["routes"] = routes
    if "classifier" in data:
        kwargs["classifier"] = _classifier(b, data["classifier"])
    cfg = Config(**kwargs, source=source)
    _check_references(b, cfg)
    return _fill_defaults(cfg, env, hostname)


def _classifier(b: _Builder, data: Any) -> ClassifierConfig:
    if not isinstance(data, dict):
        raise b.fail("classifier", "", "expected a table [classifier]")
    out: dict[str, dict[str, float]] = {}
    apps: dict[str, str] = {}
    numbers: dict[str, float] = {}
    for key, value in data.items():
        if key in ("settle_below", "settle_timeout"):
            try:
                numbers[key] = _convert(value, float)
            except TypeError:
                raise b.fail("classifier", key, f"expected a number, got {value!r}") from None
            b.check_value("classifier", key, numbers[key], "classifier", None)
            continue
        if key == "apps":
            if not isinstance(value, dict):
                raise b.fail("classifier", "apps", 'expected a table {app = "route"}')
            for app, route in value.items():
                if not isinstance(route, str) or (route and not _ROUTE_NAME_RE.match(route)):
                    raise b.fail("classifier.apps", app,
                                 f'expected a route name or "" (none), got {route!r}')
                apps[str(app).lower()] = route
            continue
        if key != "keywords":
            raise b.fail("classifier", key, "unknown key; expected: keywords, apps, "
                         "settle_below, settle_timeout")
        if not isinstance(value, dict):
            raise b.fail("classifier", "keywords", "expected a table of routes")
        for route, words in value.items():
            if not _ROUTE_NAME_RE.match(route):
                raise b.fail("classifier.keywords", route, "not a valid route name")
            if isinstance(words, list):  # a plain list: every word weighs 1
                words = {w: 1.0 for w in words}
            if not isinstance(words, dict):
                raise b.fail("classifier.keywords", route,
                             'expected a table {"word" = weight} or a list of words')
            table: dict[str, float] = {}
            for w, weight in words.items():
                if (isinstance(weight, bool) or not isinstance(weight, (int, float))
                        or not math.isfinite(weight)):
                    raise b.fail(f"classifier.keywords.{route}", w,
                                 f"expected a number (weight), got {weight!r}")
                if not str(w).strip():
                    raise b.fail(f"classifier.keywords.{route}", w, "empty keyword")
                table[str(w).lower()] = float(weight)
            out[route] = table
    return ClassifierConfig(keywords=out, apps=apps, **numbers)


def _check_references(b: _Builder, cfg: Config) -> None:
    for name, r in cfg.routes.items():
        for key in ("fallback",):
            target = getattr(r, key)
            if target and target not in cfg.routes:
                raise b.fail(f"routes.{name}", key,
                             f"no route named {target!r}; routes: {', '.join(cfg.routes)}")
        if r.fallback == name:
            raise b.fail(f"routes.{name}", "fallback", "a route cannot fall back to itself")
    for app, route in cfg.classifier.apps.items():
        if route and route not in cfg.routes:
            raise b.fail("classifier.apps", app,
                         f"no route named {route!r}; routes: {', '.join(cfg.routes)}")
    for route in cfg.classifier.keywords:
        if route not in cfg.routes:
            raise b.fail("classifier.keywords", route,
                         f"no route named {route!r}; add [routes.{route}] with its models")
    if cfg.api.enabled and not cfg.api.allow_lan and not is_loopback_host(cfg.api.bind):
        # the front door has no password: the daemon refuses this bind (app/frontdoor.py)
        raise b.fail("api", "bind", f"{cfg.api.bind!r} would let anyone on the network use "
                     "your models without a password; keep \"127.0.0.1\", or set "
                     "allow_lan = true under [api] if you really want that")
    seen: set[str] = set()
    for s in cfg.servers:
        if s.label in seen:
            raise b.fail("servers", "name", f"two servers are both named {s.label!r}")
        seen.add(s.label)


def is_loopback_host(host: str) -> bool:
    """Whether a bind address or host name stays on this machine."""
    import ipaddress

    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _fill_defaults(cfg: Config, env: Mapping[str, str], hostname: str) -> Config:
    from dataclasses import replace

    node = cfg.node if cfg.node.name else replace(cfg.node, name=hostname or "this-machine")
    servers = cfg.servers
    if not servers:
        servers = (ServerConfig(url=ollama_url_from_env(env), kind="ollama", name="ollama"),)
    return replace(cfg, node=node, servers=servers)


def ollama_url_from_env(env: Mapping[str, str]) -> str:
    """OLLAMA_HOST as Ollama itself reads it: host, host:port or a URL."""
    host = env.get("OLLAMA_HOST", "").strip()
    if not host:
        return DEFAULT_OLLAMA_URL
    if not host.startswith(("http://", "https://")):
        host = "http://" + host
    scheme, rest = host.split("://", 1)
    hostport = rest.split("/", 1)[0]
    if hostport.startswith("0.0.0.0"):
        hostport = "127.0.0.1" + hostport[len("0.0.0.0"):]
    if ":" not in hostport.rsplit("]", 1)[-1]:
        hostport += ":11434"
    return f"{scheme}://{hostport}"


def config_as_toml(cfg: Config) -> str:
    """Render the effective configuration as TOML (for `labrouter config show`)."""
    out: list[str] = []

    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, tuple):
            return "[" + ", ".join(val(x) for x in v) + "]"
        # JSON's string escapes are TOML's; control characters must be escaped, or a
        # name with a newline would make `config show` print a file that does not parse
        return json.dumps(str(v), ensure_ascii=False).replace("\x7f", "\\u007f")
    def emit(header: str, obj: Any) -> None:
        out.append(header)
        for f in fields(obj):
            out.append(f"{f.name} = {val(getattr(obj, f.name))}")
        out.append("")

    emit("[node]", cfg.node)
    for s in cfg.servers:
        emit("[[servers]]", s)
    for name, r in cfg.routes.items():
        emit(f"[routes.{name}]", r)
    out.append("[classifier]")
    out.append(f"settle_below = {val(cfg.classifier.settle_below)}")
    out.append(f"settle_timeout = {val(cfg.classifier.settle_timeout)}")
    out.append("")
    if cfg.classifier.keywords:
        for route, words in cfg.classifier.keywords.items():
            out.append(f"[classifier.keywords.{route}]")
            out.extend(f"{val(w)} = {wt!r}" for w, wt in words.items())
            out.append("")
    if cfg.classifier.apps:
        out.append("[classifier.apps]")
        out.extend(f"{val(a)} = {val(r)}" for a, r in cfg.classifier.apps.items())
        out.append("")
    for name in ("cluster", "timeouts", "routing", "budget", "hotkey", "desktop", "usage",
                 "relay", "api"):
        emit(f"[{name}]", getattr(cfg, name))
    return "\n".join(out)
