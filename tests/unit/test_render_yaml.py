"""render.yaml against Render's Blueprint reference (the fields this blueprint uses, and their rules)."""
from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import yaml

from config import Settings

ROOT = Path(__file__).resolve().parents[2]
BLUEPRINT = yaml.safe_load((ROOT / "render.yaml").read_text())
SERVICES = {s["name"]: s for s in BLUEPRINT["services"]}
# Render's instance types: memory (MB) and CPUs (README "Deploy" and render.yaml's comments say the same).
PLANS = {"free": (512, 0.1), "starter": (512, 0.5), "standard": (2048, 1.0), "pro": (4096, 2.0)}
COMPUTE_FIELDS = {"type", "name", "runtime", "plan", "dockerfilePath", "dockerContext", "dockerCommand",
                  "healthCheckPath", "envVars", "disk", "maxShutdownDelaySeconds", "numInstances", "region",
                  "autoDeploy", "branch"}
KEYVALUE_FIELDS = {"type", "name", "plan", "maxmemoryPolicy", "ipAllowList", "region"}


def compute() -> list[dict]:
    return [s for s in BLUEPRINT["services"] if s["type"] != "keyvalue"]


def test_every_field_is_one_the_reference_names():
    for service in BLUEPRINT["services"]:
        allowed = KEYVALUE_FIELDS if service["type"] == "keyvalue" else COMPUTE_FIELDS
        assert set(service) <= allowed, (service["name"], set(service) - allowed)
        assert service["plan"] in PLANS or service["type"] == "keyvalue"


def test_health_check_on_the_web_service_only_and_it_is_the_readiness_route():
    assert [s["name"] for s in compute() if "healthCheckPath" in s] == ["speech-api"]
    assert SERVICES["speech-api"]["healthCheckPath"] == "/ready"


def test_a_disk_only_on_a_paid_plan_and_the_checkpoints_on_it():
    for service in compute():
        if "disk" in service:
            assert service["plan"] != "free"
            checkpoints = {v["key"]: v.get("value") for v in service["envVars"]}["SADTALKER_CHECKPOINT_DIR"]
            assert checkpoints.startswith(service["disk"]["mountPath"] + "/")


def test_the_workers_command_is_a_module_the_image_has():
    worker = SERVICES["speech-api-animation"]
    argv = shlex.split(worker["dockerCommand"])
    assert argv[:2] == ["python", "-m"] and importlib.util.find_spec(argv[2]) is not None
    assert 1 <= worker["maxShutdownDelaySeconds"] <= 300


def test_key_value_has_its_required_allow_list_and_keeps_its_keys():
    store = SERVICES["speech-api-jobs"]
    assert store["ipAllowList"] == [] and store["maxmemoryPolicy"] == "noeviction"


def test_each_services_settings_are_settings_and_its_budget_fits_its_plan():
    names = {name.upper() for name in Settings.model_fields} | {"IMAGE"}  # IMAGE: a Docker build argument
    for service in compute():
        env = {v["key"]: v.get("value") for v in service.get("envVars", [])}
        assert set(env) <= names, set(env) - names
        assert int(env["MEMORY_BUDGET_MB"]) <= PLANS[service["plan"]][0]


def test_the_comments_state_each_plans_memory_and_cpu():
    text = (ROOT / "render.yaml").read_text()
    for plan, (mb, cpus) in PLANS.items():
        memory = f"{mb} MB" if mb < 1024 else f"{mb // 1024} GB"
        assert f"{plan} {memory}, {cpus:g} CPU" in text, plan
