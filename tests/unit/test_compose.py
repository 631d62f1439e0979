"""What can be checked of compose.yaml without a container engine: loopback-only ports, secrets from
the env file, health checks behind every `service_healthy`, named volumes, and the stack scripts'
syntax. `scripts/stack-check.sh` runs the stack itself (docs/stack.md)."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from helpers import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
OFFLINE = yaml.safe_load((REPO_ROOT / "compose.offline.yaml").read_text())
SERVICES = COMPOSE["services"]


def has_healthcheck(service: dict) -> bool:
    return bool(service.get("healthcheck", {}).get("test"))


def test_the_stack_has_its_services():
    assert {"postgres", "mlflow", "prefect", "webhooks", "worker", "pipeline", "model-server"} <= set(SERVICES)
    assert SERVICES["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://")
    assert SERVICES["worker"]["command"][:2] == ["worker", "--pool"]
    assert SERVICES["model-server"]["command"][0] == "serve"


def test_ports_are_published_on_loopback_only():
    published = [port for service in SERVICES.values() for port in service.get("ports", [])]
    assert len(published) == 3  # MLflow, Prefect, the model server
    for port in published:
        assert port.startswith("127.0.0.1:"), port


def test_secrets_come_from_the_env_file_never_from_the_file_itself():
    for name, service in [*SERVICES.items(), *OFFLINE["services"].items()]:
        environment = service.get("environment") or {}
        for key, value in environment.items():
            if re.search(r"PASSWORD|SECRET|_KEY$", key):
                assert str(value).startswith("${") and ":?" in str(value), f"{name}.{key}: {value}"
            if "://" in str(value) and "@" in str(value):  # a URL with credentials
                assert "${POSTGRES_PASSWORD}" in value, f"{name}.{key}"
    assert "stack.env" in (REPO_ROOT / ".gitignore").read_text().split()
    assert "stack.env" in (REPO_ROOT / ".dockerignore").read_text().split()


def test_every_service_waited_for_has_a_health_check():
    for name, service in SERVICES.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert rule["condition"] == "service_healthy", f"{name} -> {dependency}"
            assert has_healthcheck(SERVICES[dependency]), dependency
    for name in ("postgres", "mlflow", "prefect", "webhooks", "worker", "model-server"):
        assert has_healthcheck(SERVICES[name]), name


def test_state_lives_in_named_volumes():
    declared = set(COMPOSE["volumes"])
    assert {"postgres-data", "mlflow-artifacts", "prefect-data"} == declared
    for name in ("postgres", "mlflow", "prefect"):
        sources = {volume.split(":")[0] for volume in SERVICES[name]["volumes"]}
        assert sources & declared, name
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for mount in ("/var/lib/imdb-mlops/mlartifacts", "/var/lib/imdb-mlops/prefect"):
        assert mount in dockerfile  # made in the image, owned by its user: a new volume inherits that


@pytest.mark.parametrize("script", ["stack.sh", "stack-check.sh", "make-base-image.sh"])
def test_stack_scripts_parse(script):
    path = REPO_ROOT / "scripts" / script
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0


def test_stack_script_without_a_command_prints_its_usage():
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "stack.sh")], capture_output=True, text=True)
    assert proc.returncode == 2 and "scripts/stack.sh up" in proc.stderr
