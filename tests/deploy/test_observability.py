"""deploy/prometheus and deploy/grafana: promtool on the config and rules, then a real Prometheus
scraping a live server while clients stream MIT-BIH 100; every panel query and alert must answer."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import wfdb
from prometheus_client import CollectorRegistry
from server_harness import REPO, encode_requests, start

from sancodec.v1 import codec_pb2, codec_pb2_grpc
from server.telemetry import Telemetry

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "sancodec.json"
ALERTS = {
    "SancodecQualityDrift", "SancodecErrorRatio", "SancodecLatencySLO", "SancodecDown",
    "SancodecNotReady", "SancodecBeatsLost",
}  # fmt: skip
# Exported but on no panel: undefined figures are rare (a constant block), the build is static.
OFF_DASHBOARD = {"sancodec_block_quality_undefined_total", "sancodec_build_info"}
GRAFANA_INTERVALS = {"$__rate_interval": "30s", "$__interval": "5s", "$__range": "1m"}
COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(\s*bool)?")


@pytest.fixture(scope="module")
def promtool() -> Path:
    done = subprocess.run(
        ["bash", str(REPO / "tools" / "ensure_promtool.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"tools/ensure_promtool.sh failed:\n{done.stderr}{done.stdout}")
    return Path(done.stdout.strip())


@pytest.fixture(scope="module")
def prometheus(promtool: Path) -> Path:
    """The prometheus server binary, which Debian's package installs beside promtool."""
    path = promtool.parent / "prometheus"
    if not path.is_file():
        pytest.fail(f"no prometheus binary beside {promtool}: install Debian's prometheus package")
    return path


def _promtool(promtool: Path, *args: str) -> str:
    done = subprocess.run(
        [str(promtool), *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_checks_config_and_rules(promtool: Path) -> None:
    assert "1 rule files found" in _promtool(promtool, "check", "config", "prometheus.yml")
    assert f"{len(ALERTS)} rules found" in _promtool(promtool, "check", "rules", "alerts.yml")


def test_promtool_unit_tests_every_alert_firing_and_silent(promtool: Path) -> None:
    assert "SUCCESS" in _promtool(promtool, "test", "rules", "alerts_test.yml")
    rules = (PROMETHEUS_DIR / "alerts.yml").read_text()
    assert set(re.findall(r"^\s*- alert: (\w+)$", rules, re.M)) == ALERTS
    cases = re.findall(
        r"alertname: (\w+)\n\s+exp_alerts:( \[\])?",
        (PROMETHEUS_DIR / "alerts_test.yml").read_text(),
    )
    assert {name for name, empty in cases if empty} == ALERTS, "a case where each stays silent"
    assert {name for name, empty in cases if not empty} == ALERTS, "a case where each fires"


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _exported_series() -> set[str]:
    """Every series name the server's registry can expose, from the metric families."""
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",)}
    suffixes |= {"gauge": ("",), "info": ("_info",)}
    families = Telemetry(CollectorRegistry()).registry.collect()
    return {
        f.name + s for f in families if f.name.startswith("sancodec_") for s in suffixes[f.type]
    }


def test_dashboard_is_wired_to_the_prometheus_datasource_and_model_variable() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 39
    (variable,) = dashboard["templating"]["list"]
    assert variable["name"] == "model"
    assert variable["query"]["query"] == "label_values(sancodec_blocks_total, model)"
    assert variable["datasource"]["uid"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"]["uid"] == "prometheus" for t in panel["targets"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_dashboard_and_alerts_use_exactly_the_exported_series() -> None:
    exported = _exported_series()
    panels = {n for p in _panels() for t in p["targets"] for n in _series_names(t["expr"])}
    rules = set(_series_names((PROMETHEUS_DIR / "alerts.yml").read_text()))
    assert panels | rules <= exported, "misnamed metric"
    assert {s.removesuffix("_bucket") for s in exported if s.endswith("_bucket")} <= {
        s.removesuffix("_bucket") for s in panels
    }, "a histogram with no panel"
    assert {s for s in exported if not s.endswith(("_sum", "_count", "_bucket"))} - panels == (
        OFF_DASHBOARD
    )


def _series_names(text: str) -> list[str]:
    return re.findall(r"\bsancodec_\w+", text)


@pytest.fixture(scope="module")
def recording(shared_data: Path) -> np.ndarray:
    """MIT-BIH 100, both leads, 50 s in mV: (2, 18000), past ecg's first check of a stream's
    kernels (16384 samples), so that the checks' panel has data."""
    record = wfdb.rdrecord(str(shared_data / "wfdb" / "mitdb" / "100"), sampto=50 * 360)
    return record.p_signal.T.copy()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _live_config(folder: Path, metrics_port: int, api_port: int) -> Path:
    """deploy/prometheus/prometheus.yml with loopback targets, 1 s intervals, alerts.yml beside."""
    text = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    for target, live in (("server:9464", metrics_port), ("localhost:9090", api_port)):
        assert text.count(target) == 1, target
        text = text.replace(target, f"127.0.0.1:{live}")
    text, n = re.subn(r"(scrape_interval|scrape_timeout|evaluation_interval): \w+", r"\1: 1s", text)
    assert n == 3
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", folder / "alerts.yml")
    (folder / "prometheus.yml").write_text(text)
    return folder / "prometheus.yml"


class PrometheusApi:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as reply:
            body = json.load(reply)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return data["result"]  # type: ignore[no-any-return]


@contextmanager
def _prometheus(binary: Path, folder: Path, metrics_port: int) -> Iterator[PrometheusApi]:
    port = _free_port()
    config = _live_config(folder, metrics_port, port)
    log = folder / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(binary), f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        api = PrometheusApi(port)
        _until(lambda: _ready(api, process), 30, lambda: log.read_text()[-3000:])
        yield api
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _ready(api: PrometheusApi, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "prometheus exited"
    try:
        with urllib.request.urlopen(f"{api.base}/-/ready", timeout=2) as reply:
            return reply.status == 200  # type: ignore[no-any-return]
    except OSError:
        return False


def _until(condition: Any, timeout_s: float, why: Any) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, why()
        time.sleep(0.25)


def _one_pass(
    stub: codec_pb2_grpc.CodecServiceStub, pool: ThreadPoolExecutor, signal: np.ndarray
) -> None:
    """Three concurrent Encode streams, a Decode of one, and an Encode of an unknown model."""
    streams = [
        pool.submit(lambda: list(stub.Encode(encode_requests(signal, 360)))) for _ in range(3)
    ]
    results = [s.result(30) for s in streams]
    assert [r[-1].summary.sample_count for r in results] == [signal.shape[1]] * 3
    blocks = [r.block for r in results[0] if r.WhichOneof("payload") == "block"]
    config = codec_pb2.DecodeRequest(config=codec_pb2.DecodeConfig(model="ecg", channel_count=2))
    decoded = stub.Decode(iter([config, *(codec_pb2.DecodeRequest(block=b) for b in blocks)]))
    assert sum(r.chunk.sample_count for r in decoded) == signal.shape[1]
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Encode(encode_requests(signal, 360, model="no-such-model")))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@contextmanager
def _traffic(address: str, signal: np.ndarray) -> Iterator[list[BaseException]]:
    """Passes over and over in a thread, so that rates stay non-zero across scrapes; yields the
    list that a failed pass lands in."""
    stop, failures = threading.Event(), []

    def run() -> None:
        with grpc.insecure_channel(address) as channel, ThreadPoolExecutor(3) as pool:
            stub = codec_pb2_grpc.CodecServiceStub(channel)
            while not stop.is_set():
                try:
                    _one_pass(stub, pool, signal)
                except BaseException as exc:  # surfaced in the test thread
                    failures.append(exc)
                    return
                stop.wait(0.2)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield failures
    finally:
        stop.set()
        thread.join(30)


def _scraped(api: PrometheusApi, failures: list[BaseException]) -> bool:
    """Three scrapes with blocks and errors, and the error-ratio alert pending on them."""
    if failures:
        raise failures[0]
    for series in ("sancodec_blocks_total", "sancodec_errors_total"):
        counts = api.query(f"count_over_time({series}[1m])")
        if not counts or float(counts[0]["value"][1]) < 3:
            return False
    alerts = api.get("/api/v1/alerts")["alerts"]
    return any(a["labels"]["alertname"] == "SancodecErrorRatio" for a in alerts)


def _alert_series(expr: str) -> str:
    """The series part of `<series> <comparison> <number>`: the one top-level comparison."""
    depth, i, found = 0, 0, []
    while i < len(expr):
        match = COMPARISON.match(expr, i) if depth == 0 else None
        if match:
            found.append(match)
            i = match.end()
            continue
        depth += (expr[i] in "([{") - (expr[i] in ")]}")
        i += 1
    assert len(found) == 1, f"not one top-level comparison in {expr!r}"
    left, right = expr[: found[0].start()], expr[found[0].end() :]
    float(right)  # the threshold is a number
    return left.strip()


def _finite(result: list[dict[str, Any]]) -> bool:
    return any(np.isfinite(float(r["value"][1])) for r in result)


def _panel_exprs(models: list[str]) -> Iterator[tuple[str, str]]:
    for panel in _panels():
        for target in panel["targets"]:
            for model in [".*", *models]:
                expr = target["expr"].replace("$model", model)
                for variable, value in GRAFANA_INTERVALS.items():
                    expr = expr.replace(variable, value)
                assert "$" not in expr, f"unknown variable in {target['expr']!r}"
                yield f"{panel['title']} [{model}]", expr


def test_live_prometheus_answers_every_panel_and_alert(
    prometheus: Path, recording: np.ndarray, tmp_path: Path
) -> None:
    running = start()
    try:
        metrics_port = running.telemetry.serve(0, host="127.0.0.1")
        with _prometheus(prometheus, tmp_path, metrics_port) as api:
            with _traffic(running.address, recording) as failures:
                _until(lambda: _scraped(api, failures), 40, lambda: api.get("/api/v1/targets"))
            models = api.get("/api/v1/label/model/values", **{"match[]": "sancodec_blocks_total"})
            assert models == ["ecg"]
            empty = [title for title, expr in _panel_exprs(models) if not _finite(api.query(expr))]
            assert empty == [], "panels without data"
            rules = [r for g in api.get("/api/v1/rules")["groups"] for r in g["rules"]]
            assert {r["name"] for r in rules} == ALERTS
            assert all(r["health"] == "ok" for r in rules), rules
            silent = [r["name"] for r in rules if not _finite(api.query(_alert_series(r["query"])))]
            assert silent == [], "alert expressions without data"
            alerts = api.get("/api/v1/alerts")["alerts"]
            assert {(a["labels"]["alertname"], a["state"]) for a in alerts} == {
                ("SancodecErrorRatio", "pending")  # the unknown-model calls, and only them
            }
    finally:
        running.telemetry.close()
        running.stop()
