"""Config parsing and validation: defaults, every kind of mistake, and the CLI's answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from labrouter.core.config import (
    API_PORT,
    CLUSTER_PORT,
    config_as_toml,
    ollama_url_from_env,
    parse_config,
)
from labrouter.core.errors import ConfigError


def test_zero_config_gives_the_local_ollama_and_four_routes() -> None:
    cfg = parse_config("", hostname="mini")
    assert cfg.node.name == "mini"
    assert [s.url for s in cfg.servers] == ["http://127.0.0.1:11434"]
    assert set(cfg.routes) >= {"quick", "code", "reasoning", "vision"}
    assert cfg.route("code").fallback == "quick"
    assert cfg.cluster.port == CLUSTER_PORT and cfg.api.port == API_PORT
    assert cfg.usage.log_prompts is False


@pytest.mark.parametrize("value,expected", [
    ("", "http://127.0.0.1:11434"),
    ("0.0.0.0", "http://127.0.0.1:11434"),
    ("0.0.0.0:8080", "http://127.0.0.1:8080"),
    ("gpu-box:11434", "http://gpu-box:11434"),
    ("https://ollama.example", "https://ollama.example:11434"),
    ("http://127.0.0.1:9999/", "http://127.0.0.1:9999"),
])
def test_ollama_host_is_read_as_ollama_reads_it(value: str, expected: str) -> None:
    assert ollama_url_from_env({"OLLAMA_HOST": value}) == expected


def test_a_full_file_is_read() -> None:
    text = """
[node]
name = "gpu-box"
pause_when_running = ["vast-client"]

[[servers]]
url = "http://127.0.0.1:11434"

[[servers]]
url = "https://api.example.com/v1"
kind = "openai"
name = "cloud"
api_key_env = "EXAMPLE_KEY"
cost_input_per_1k = 0.001
cost_output_per_1k = 0.002

[routes.code]
models = ["qwen3-coder:30b"]
allow_cloud = true

[routes.translate]
models = ["qwen3:4b"]
fallback = "quick"

[classifier.keywords]
translate = {"translate" = 2.0, "auf deutsch" = 3}

[budget]
daily_usd = 1.5
"""
    cfg = parse_config(text, source="c.toml")
    assert cfg.node.name == "gpu-box"
    assert cfg.servers[1].is_cloud and cfg.servers[1].label == "cloud"
    assert cfg.route("code").models == ("qwen3-coder:30b",)
    # keys not written keep the built-in default of that route
    assert cfg.route("code").fallback == "quick"
    assert cfg.route("translate").fallback == "quick"
    assert cfg.classifier.keywords["translate"]["auf deutsch"] == 3.0
    assert cfg.budget.daily_usd == 1.5
    # what `config show` prints parses back to the same configuration
    again = parse_config(config_as_toml(cfg))
    assert again.routes == cfg.routes and again.servers == cfg.servers


@pytest.mark.parametrize("text,line,needle", [
    ("[node]\nnmae = 'x'\n", 2, "node.nmae: unknown key"),
    ("[cluster]\nport = 'x'\n", 2, "cluster.port: expected an integer"),
    ("[cluster]\nport = 70000\n", 2, "expected a port"),
    ("[cluster]\ninterval = 0\n", 2, "above 0"),
    ("[[servers]]\nurl = 'ftp://x'\n", 2, "http:// or https:// URL"),
    ("[[servers]]\nurl = 'http://a:1'\n[[servers]]\nurl = 'http://b:1'\nkind = 'vllm'\n", 5,
     "expected one of ollama, openai"),
    ("[routes.code]\nfallback = 'nope'\n", 2, "no route named 'nope'"),
    ("[routes.code]\nmodels = 'qwen'\n", 2, "expected a list of strings"),
    ("[desktop]\ncopy_answer = 'sometimes'\n", 2, "never, when-shortened, always"),
    ("[hotkeys]\nask = 'x'\n", 1, "unknown section"),
    ("[usage]\nlog_prompts = 1\n", 2, "true or false"),
    ("[classifier.keywords]\nlegal = ['contract']\n", 2, "no route named 'legal'"),
    ("[node\nname='x'\n", 1, "not valid TOML"),
    ("[budget]\ndaily_usd = nan\n", 2, "budget.daily_usd: expected a finite number"),
    ("[timeouts]\ntotal = inf\n", 2, "timeouts.total: expected a finite number"),
    # the typos that flooded the LAN or silenced a node: the protocol's clamps, 50 ms .. 60 s
    ("[node]\nname = 'x'\n[cluster]\ninterval = 0.000001\n", 4,
     "cluster.interval: expected 0.05s to 60s"),
    ("[cluster]\ninterval = 1e300\n", 2, "cluster.interval: expected 0.05s to 60s"),
    ("[timeouts]\nconnect = 1e9\n", 2, "timeouts.connect: expected 0.05s to 300s"),
    ("[relay]\nmax_concurrent_per_model = 100000\n", 2, "expected 1 to 1024"),
    ("[usage]\nretention_days = 10000000\n", 2, "retention_days: expected 1 days"),
])
def test_mistakes_name_the_file_line_key_and_expectation(text: str, line: int,
                                                         needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="/x/config.toml")
    msg = str(err.value)
    assert msg.startswith(f"/x/config.toml:{line}:"), msg
    assert needle in msg
    assert err.value.exit_code == 2 and err.value.hint


def test_config_show_prints_toml_that_parses_back_whatever_the_strings() -> None:
    cfg = parse_config('[node]\nname = "a\\nb\\t\\u0001\\u007f\\"\\\\é"\n'
                       '[classifier.keywords]\ncode = { "new\\nline" = 1 }\n')
    again = parse_config(config_as_toml(cfg))
    assert again.node.name == "a\nb\t\x01\x7f\"\\é" == cfg.node.name
    assert again.classifier.keywords == cfg.classifier.keywords


def test_nan_and_inf_are_not_numbers_here() -> None:
    with pytest.raises(ConfigError, match=r"code\.x: expected a number \(weight\)"):
        parse_config("[classifier.keywords]\ncode = { x = nan }\n")
    assert parse_config("[timeouts]\ntotal = 1e3\n").timeouts.total == 1000.0


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    import os
    env = dict(os.environ, LABROUTER_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "labrouter", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_cli_reports_a_bad_file_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[cluster]\nport = 'eleven'\n")
    out = _cli("--config", str(bad), "config", "validate", home=tmp_path / "h")
    assert out.returncode == 2
    assert f"{bad}:2: cluster.port: expected an integer" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_config_path_show_and_paths(tmp_path: Path) -> None:
    home = tmp_path / "h"
    out = _cli("config", "path", home=home)
    assert out.stdout.strip() == str(home / "config" / "config.toml")
    out = _cli("config", "validate", home=home)
    assert out.returncode == 0 and "built-in defaults" in out.stdout
    out = _cli("paths", "--json", home=home)
    assert str(home / "data") in out.stdout
    missing = _cli("--config", str(tmp_path / "nope.toml"), "config", "show", home=home)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_atomic_writes_from_many_writers_at_once(tmp_path: Path) -> None:
    import json
    import threading

    from labrouter.app.paths import write_atomic

    target = tmp_path / "speeds.json"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        for i in range(100):
            try:
                write_atomic(target, json.dumps({"writer": n, "i": i, "pad": "x" * 5000}))
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert json.loads(target.read_text())["i"] == 99  # whole, never a mix of two writers
    assert [p.name for p in tmp_path.iterdir()] == ["speeds.json"]
