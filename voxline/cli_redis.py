"""``voxline redis-cluster`` and ``voxline redis-sentinel``: Redis set-ups on loopback
ports for trying Voxline's log on a cluster or behind Sentinels on one machine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Protocol

import typer

from voxline._cli_app import app, fail, say


class _LocalServers(Protocol):
    """Redis processes started here for trying Voxline (a cluster, a Sentinel setup)."""

    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


def _serve_until_stopped(start: Callable[[], _LocalServers],
                         describe: Callable[[Any], list[str]]) -> None:
    """Start local Redis processes, say what runs and the URL to use, and stop them on
    Ctrl-C or SIGTERM (a configuration error is said, and exits 1)."""
    from schemas import ConfigurationError
    from voxline.stopping import StopSignals

    signals = StopSignals()
    signals.install()
    servers = None
    try:
        servers = start()
        for line in describe(servers):
            say(line)
        say(f"\nVOXLINE_REDIS_URL={servers.url}\nPress Ctrl-C to stop them.")
        signals.wait()
    except ConfigurationError as exc:
        fail(exc.message)
    except KeyboardInterrupt:
        pass
    finally:
        if servers is not None:
            servers.stop()
    say("stopped")


@app.command("redis-cluster")
def redis_cluster(
    primaries: Annotated[int, typer.Option(min=1, help="primaries (shards)")] = 3,
    replicas: Annotated[int, typer.Option(min=0, help="replicas per primary")] = 1,
) -> None:
    """Start a Redis Cluster on loopback ports (no persistence) until Ctrl-C or SIGTERM.

    Point Voxline at the URL it prints: VOXLINE_REDIS_URL=redis+cluster://...
    """
    from voxline.redis_cluster import RedisClusterServers, start_redis_cluster

    def describe(cluster: RedisClusterServers) -> list[str]:
        lines = [f"Redis Cluster ready: {primaries} primaries, {replicas} replica(s) each"]
        for role, nodes in (("primary", cluster.primaries), ("replica", cluster.replicas)):
            lines += [f"  {role}  127.0.0.1:{node.port}  (log {node.workdir / 'redis.log'})"
                      for node in nodes]
        return lines

    _serve_until_stopped(
        lambda: start_redis_cluster(primaries=primaries, replicas_per_primary=replicas),
        describe)


@app.command("redis-sentinel")
def redis_sentinel(
    replicas: Annotated[int, typer.Option(min=1, help="replicas of the primary")] = 1,
    sentinels: Annotated[int, typer.Option(min=1, help="sentinels (a majority must agree)")] = 3,
) -> None:
    """Start a Redis primary, its replica(s) and Sentinels on loopback ports (no
    persistence) until Ctrl-C or SIGTERM.

    Point Voxline at the URL it prints: VOXLINE_REDIS_URL=redis+sentinel://...
    """
    from voxline.redis_sentinel import RedisSentinelServers, start_redis_sentinel

    def describe(setup: RedisSentinelServers) -> list[str]:
        lines = [f"Redis Sentinel ready: 1 primary, {replicas} replica(s), {sentinels} "
                 f"sentinels watching it as {setup.master_name!r}"]
        roles = [("primary", setup.servers[:1]), ("replica", setup.servers[1:]),
                 ("sentinel", setup.sentinels)]
        for role, processes in roles:
            lines += [f"  {role:8} 127.0.0.1:{process.port}  (log {process.workdir / 'redis.log'})"
                      for process in processes]
        return lines

    _serve_until_stopped(
        lambda: start_redis_sentinel(replicas=replicas, sentinels=sentinels), describe)
