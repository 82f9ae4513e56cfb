"""docker-compose.yml must agree with the Celery routing in webapp/jobs/registry.py."""
from pathlib import Path

import pytest
import yaml

from webapp.jobs.registry import JOB_KINDS

pytestmark = pytest.mark.unit
COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def compose():
    return yaml.safe_load(COMPOSE.read_text())


def worker_queues(service: dict) -> set[str]:
    cmd = service["command"]
    return set(cmd[cmd.index("-Q") + 1].split(","))


def test_services_present():
    assert set(compose()["services"]) == {"postgres", "redis", "web", "worker-cpu", "worker-gpu"}


def test_worker_queues_match_design():
    services = compose()["services"]
    assert worker_queues(services["worker-cpu"]) == {"default", "cpu"}
    assert worker_queues(services["worker-gpu"]) == {"gpu"}


def test_every_routed_queue_has_a_worker():
    services = compose()["services"]
    consumed = worker_queues(services["worker-cpu"]) | worker_queues(services["worker-gpu"])
    routed = {kind.queue for kind in JOB_KINDS.values()}
    assert routed <= consumed, f"queues with no worker: {routed - consumed}"
    assert JOB_KINDS["train_encoder"].queue == "gpu" and JOB_KINDS["embed"].queue == "gpu"


def test_gpu_worker_reserves_an_nvidia_device():
    devices = compose()["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_all_app_services_share_one_environment():
    services = compose()["services"]
    envs = [services[name]["environment"] for name in ("web", "worker-cpu", "worker-gpu")]
    assert envs[0] == envs[1] == envs[2]
    assert envs[0]["DATABASE_URL"].startswith("postgres://")
    assert envs[0]["CELERY_BROKER_URL"].startswith("redis://")
