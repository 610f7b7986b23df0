"""Start and stop the whole server on one machine: Redis (if none), Ray, the Serve app.

Ray gets its own free ports (its GCS defaults to 6379 only for ``ray start``; ``ray.init``
picks a free one) and binds 127.0.0.1 only (:data:`LOOPBACK_ONLY`; Serve's replicas keep
one port of their own on every interface, which Serve does not let us set); the dashboard
stays off; Serve's proxy gets :func:`voxline.proxy.serve_proxy_callback`. What listens on
``settings.host:settings.port`` is the Gateway replica's own server or Serve's proxy
(:mod:`voxline.ingress`). :func:`running_server` is a context manager
so that Ctrl-C and SIGTERM stop everything it started, in reverse order, after a drain
(:mod:`voxline.stopping`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from schemas import ConfigurationError, Settings
from voxline.ingress import check_port_free, resolve_ingress
from voxline.proxy import PROXY_CALLBACK
from voxline.redis_server import redis_url_or_server
from voxline.stopping import StopSignals

logger = logging.getLogger(__name__)

APP_NAME = "voxline"


@dataclass(frozen=True)
class RunningServer:
    url: str
    redis_url: str
    profile: str


#: Ray Serve's controller looks at every deployment ten times a second by default: idle,
#: 3 % of a core on the CPU profile's machine (of the 15 % the whole idle app cost), which
#: at one session is a tenth of a CPU-second per voice turn. Twice a second is enough for
#: a replica started, stopped or scaled on one machine (Ray workers inherit it). Each
#: replica, and each handle's router, also wakes ten times a second to hand Serve's own
#: metrics to Ray's; once a second is finer than any scrape: the idle app's six replicas
#: measured 4.5-5.1 CPU-s a minute before, 3.3-4.8 after (2026-11-28, 60 s windows).
QUIET_SERVE = {"RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
               "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000"}
#: Ray starts its workers at nice 15 (so that a busy worker cannot starve the raylet), and
#: every replica is a worker: the Gateway and the models then get a small share of the CPU
#: beside any process at the usual priority (Redis, Ray's own GCS and raylet, a load
#: generator, the machine's other services). A socket opened in 4 ms took 166-181 ms beside
#: two busy processes at nice 0, 10 ms with the replicas at 0 (2026-11-29, 60 opens in a
#: row). A voice server's replicas are the work the machine is for: they run at the priority
#: of the process that starts Ray.
WORKER_PRIORITY = {"RAY_worker_niceness": "0"}
#: Ray's own servers (the GCS, the raylet, every worker's) listen on every interface unless
#: the node's address is 127.0.0.1, and on Linux ``ray.init`` swaps a 127.0.0.1 it is given
#: for the machine's routable address, so that other nodes could join: the one-machine
#: app's control plane, which runs whatever it is sent, was reachable from the network
#: (seen 2026-11-29 with Ray 2.60: GCS, raylet and workers on ``*``, the node registered
#: as the machine's 192.0.2.2). With Ray's switch for clusters on one machine off, 127.0.0.1
#: stays 127.0.0.1 and they listen on loopback only. Ray reads it when it is first imported.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

#: Ray's log monitor (run only where the driver shows the workers' output:
#: :data:`UNUSED_RAY_PROCESSES`) looks for new log files ten times a second with a glob of
#: the session's log folder (until there are 1,000 files), and reads the files it knows as
#: often: idle, 1.28 % of a core, 0.53 % with new files looked for every 2 s (2026-11-30,
#: 60 s windows; the rest of the app unchanged). A new worker's log lines still all reach
#: the driver, up to 2 s later; lines of the files it knows, as before.
QUIET_LOG_MONITOR = {"RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0",
                     "LOG_NAME_UPDATE_INTERVAL_S": "2"}


#: Processes of Ray's head that the one-machine app never uses, each with the ``Node``
#: method that stops it: the autoscaler's monitor (one machine has no nodes to add), the
#: dashboard's API server (the dashboard is off; what is left serves Ray's job and state
#: APIs, which nothing here calls) and the log monitor (it forwards the workers' output to
#: the driver, kept when the driver shows it: ``voxline serve --verbose``). Each wakes on
#: timers of its own whatever the app does: together 0.51 % of a core idle, and 0.027
#: CPU-s of each voice turn at one session (``capacity --steps 1 --step-s 90``, twice
#: each way, 2026-11-30; docs/measurements.md). ``ray start`` has switches for the first
#: and the last, ``ray.init`` none, so they are stopped right after it through Ray's node
#: object; Ray carries on without them (a dashboard that fails to start does not stop it).
UNUSED_RAY_PROCESSES = {"autoscaler monitor": "kill_monitor",
                        "dashboard API server": "kill_dashboard",
                        "log monitor": "kill_log_monitor"}


def stop_unused_ray_processes(*, keep_log_monitor: bool) -> list[str]:
    """Stop this driver's Ray head's :data:`UNUSED_RAY_PROCESSES` (the log monitor too
    unless ``keep_log_monitor``); the names of those stopped. One this version of Ray does
    not name the same way is left running, logged: the app works either way."""
    import ray

    worker = getattr(getattr(ray, "_private", None), "worker", None)
    node = getattr(worker, "_global_node", None)
    stopped = []
    for name, method in UNUSED_RAY_PROCESSES.items():
        if name == "log monitor" and keep_log_monitor:
            continue
        try:
            getattr(node, method)(check_alive=False)
        except Exception as exc:  # Ray's private node object changed: nothing is lost
            logger.info("Ray's %s is left running (%s)", name, exc)
        else:
            stopped.append(name)
    return stopped


def ray_environment() -> None:
    """Ray's settings for the one-machine app, each where the environment has none (an
    operator's own wins); before Ray is first imported in this process, for
    :data:`LOOPBACK_ONLY` (:func:`running_server` calls it first)."""
    for name, value in {**QUIET_SERVE, **QUIET_LOG_MONITOR, **WORKER_PRIORITY,
                        **LOOPBACK_ONLY}.items():
        os.environ.setdefault(name, value)


def start_ray(num_cpus: float | None = None, *, log_to_driver: bool = False,
              log_format: str = "text") -> None:
    """A local Ray head on 127.0.0.1 without a dashboard or the other processes the app
    never uses (:data:`UNUSED_RAY_PROCESSES`; idempotent). ``log_format``
    ``json``: every process of the job (this one, every replica) writes JSON lines, with
    the session, turn and trace ids of the records that have them
    (:func:`pipeline.tracing.install_log_context`)."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray_environment()
    # Serve's HTTP proxy inherits this: a WebSocket upgrade with a head the parser refuses
    # (a request line over 8 KiB) is answered 400 at once, not left hanging
    os.environ.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", PROXY_CALLBACK)
    from pipeline.tracing import install_log_context

    install_log_context()
    ray.init(
        address="local",  # a head of our own, never a cluster RAY_ADDRESS or `ray start` left
        num_cpus=int(num_cpus) if num_cpus else os.cpu_count(),
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=log_to_driver,
        configure_logging=False,
        logging_config=ray.LoggingConfig(encoding="JSON") if log_format == "json" else None,
    )
    stop_unused_ray_processes(keep_log_monitor=log_to_driver)
    address = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    if address != "127.0.0.1":
        logger.warning("Ray's node is %s, not 127.0.0.1: its servers listen beyond loopback "
                       "(Ray was imported before voxline.server.ray_environment() ran)", address)


#: /readyz fields that change from poll to poll without saying what is still loading
_NOT_STATE = frozenset({"ready", "checked_ms_ago", "admission", "log_tail"})


def poll_ready(url: str, timeout_s: float = 10) -> tuple[bool, dict[str, object] | str]:
    """One ``/readyz`` poll: whether every stage is ready, with the answer's body, or what
    is still loading (or why nothing answered)."""
    try:
        response = httpx.get(f"{url}/readyz", timeout=timeout_s)
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return False, f"not answering yet ({type(exc).__name__})"
    if response.status_code == 200 and body.get("ready"):
        return True, dict(body)
    return False, ", ".join(f"{k}: {'ok' if isinstance(v, dict) else v}"
                            for k, v in body.items() if k not in _NOT_STATE)


def wait_ready(url: str, timeout_s: float, say: Callable[[str], None]) -> dict[str, object]:
    """Poll ``/readyz`` until every stage reports ready, saying what is still loading."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        ready, state = poll_ready(url)
        if ready:
            assert isinstance(state, dict)
            return state
        if state != last:
            say(f"waiting for the app: {state}")
            last = str(state)
        if time.monotonic() > deadline:
            raise TimeoutError(f"the app was not ready after {timeout_s:.0f} s: {state}")
        time.sleep(1)


#: how long the one readiness question asked on a stop during start-up may take
_STOP_POLL_S = 2.0


@contextlib.contextmanager
def running_server(
    settings: Settings,
    *,
    profile: str = "cpu",
    speech_mode: str = "streaming",
    num_cpus: float | None = None,
    ready_timeout_s: float = 600,
    say: Callable[[str], None] = print,
    log_to_driver: bool = False,
    signals: StopSignals | None = None,
) -> Iterator[RunningServer]:
    """Redis (when ``settings.redis_url`` is unset), Ray and the app, stopped on exit: the
    app drained first (:func:`drain_app`), then Serve, Ray and Redis.

    With ``signals`` (the CLI's), SIGTERM and SIGINT are taken from Ray right after
    ``ray.init`` (:mod:`voxline.stopping`) so that they drain instead of dumping traces."""
    ray_environment()  # before Ray's first import here
    from ray import serve

    from deployments.app import build_app

    if signals is not None:
        signals.install()
    # what cannot work fails before anything starts
    ingress = resolve_ingress(settings, profile)
    check_port_free(settings.host, settings.port)
    if not settings.redis_url:
        say("VOXLINE_REDIS_URL is not set: starting a Redis server of our own on 127.0.0.1")
    with redis_url_or_server(settings.redis_url) as redis_url:
        settings = settings.model_copy(update={"redis_url": redis_url})
        say("starting Ray: a head of our own (no dashboard, 127.0.0.1 only)")
        ready = deploying = False
        url = f"http://{settings.host}:{settings.port}"
        try:
            start_ray(num_cpus, log_to_driver=log_to_driver, log_format=settings.log_format)
            if signals is not None:
                signals.install()  # after ray.init: replaces Ray's handlers (see stopping)
            # direct: the Gateway listens on settings.port itself and Serve runs no proxy
            # (an idle one cost 0.8 % of a core, every deployment reached by handles)
            if ingress == "proxy":
                serve.start(http_options={"host": settings.host, "port": settings.port})
            else:
                serve.start(proxy_location="Disabled")
            app = build_app({"profile": profile, "speech_mode": speech_mode},
                            settings=settings.model_copy(update={"ingress": ingress}))
            say(f"deploying the app ({profile} profile); the models load as it starts")
            # serve.run returns once the controller marks the app RUNNING, which can be
            # seconds after its replicas began serving clients: from here on it may serve.
            deploying = True
            try:
                serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
            except RuntimeError as exc:  # "failed to update the deployments [...]": say why
                failures: list[str] = []
                with contextlib.suppress(Exception):  # no status: Serve's own words
                    failures = deploy_failures(serve.status())
                raise ConfigurationError(
                    f"the app did not deploy: {'; '.join(failures) or exc}") from exc
            wait_ready(url, ready_timeout_s, say)
            ready = True
            yield RunningServer(url=url, redis_url=redis_url, profile=profile)
        finally:
            if signals is not None:
                signals.stopping()  # no signal may stop the stopping half-way
            # A signal while we wait for the app (in serve.run or wait_ready) may come after
            # it began serving clients, who poll /readyz themselves: if it answers ready
            # now, its sockets get the drain like any served app's.
            if ready or (deploying and poll_ready(url, _STOP_POLL_S)[0]):
                drain_app(settings.api.shutdown_grace_s, say, signals)
            say("stopping the app and Ray")
            with contextlib.suppress(Exception):
                serve.shutdown()  # type: ignore[no-untyped-call]
            import ray

            ray.shutdown()


def deploy_failures(status: Any) -> list[str]:
    """Each deployment of the app that failed to start, with its last error
    (``serve.status()``'s message ends with the replica constructor's traceback):
    Serve's own exception names the deployments only, so an operator who set a bad
    engine option would learn why only from the replicas' log files."""
    app = status.applications.get(APP_NAME)
    if app is None:
        return []
    failed = []
    for name, deployment in app.deployments.items():
        if str(getattr(deployment.status, "value", deployment.status)) in _FAILED:
            failed.append(f"{name}: {_last_error(deployment.message or '') or 'failed'}")
    return failed


#: deployment states of a failed start
_FAILED = frozenset({"DEPLOY_FAILED", "UNHEALTHY"})
#: a traceback's exception line: ``package.module.SomeError: what happened``
_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception)\b.*:")
_ERROR_CHARS = 500
#: the module path of an exception's name (``schemas._errors.``): the name says enough
_MODULE = re.compile(r"^[\w.]*\.(?=\w+(Error|Exception)\b)")


def _last_error(message: str) -> str:
    """The last exception of a traceback, with the lines that follow it (a validation
    error's fields), on one line without its module path; the message's last line if it
    has none."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if _ERROR_LINE.match(line)]
    tail = lines[starts[-1]:] if starts else lines[-1:]
    text = " ".join(line for line in tail if not line.startswith("For further information"))
    return _MODULE.sub("", text)[:_ERROR_CHARS]


def drain_app(
    grace_s: float, say: Callable[[str], None] = print, signals: StopSignals | None = None,
) -> None:
    """Ask the Gateway to drain (``Gateway.drain``): new work refused, running turns given
    ``grace_s``, sockets closed with 1012. Never raises: a drain that fails or is cut
    short (a second signal) only means sockets are cut when Serve stops."""
    from ray import serve

    say(f"draining: new sessions refused, running turns get up to {grace_s:.0f} s")
    try:
        with signals.interruptible() if signals is not None else contextlib.nullcontext():
            handle = serve.get_app_handle(APP_NAME)
            done = handle.drain.remote(grace_s).result(timeout_s=grace_s + 15)
        say(f"drained: {done['sockets']} sockets closed (1012: resume elsewhere), "
            f"{done.get('calls', 0)} calls hung up, {done['turns_cut']} turns cut")
    except KeyboardInterrupt:
        say("drain cut short (a second signal)")
    except Exception as exc:  # the app is gone already, or never answered
        say(f"drain failed ({type(exc).__name__}: {exc}); stopping anyway")
