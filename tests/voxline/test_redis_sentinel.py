"""The one-machine Sentinel setup (``voxline redis-sentinel``, the failover tests): what it
starts, how a killed process comes back, and that stopping ends only its own processes."""

from __future__ import annotations

import pytest
from redis import Redis

from voxline.redis_sentinel import start_redis_sentinel

pytestmark = pytest.mark.redis


def role(port: int) -> str:
    with Redis(port=port, decode_responses=True) as client:
        return str(client.info("replication")["role"])


def test_a_setup_restarts_what_was_killed_and_stops_what_it_started() -> None:
    setup = start_redis_sentinel()
    try:
        primary, replica = setup.servers
        assert setup.url == "redis+sentinel://" + ",".join(
            f"127.0.0.1:{s.port}" for s in setup.sentinels) + "/voxline"
        assert setup.master() is primary and role(replica.port) == "slave"
        assert len(setup.sentinels) == 3

        setup.kill(replica)
        again = setup.restart(replica)
        assert again in setup.servers and role(again.port) == "slave"
        setup.kill(setup.sentinels[0])
        assert setup.master() is primary  # the others still answer
        setup.restart(setup.sentinels[0])
        with pytest.raises(ValueError, match="still running"):
            setup.restart(primary)
        # back empty as the master, it would wipe its replica on the next sync
        setup.kill(primary)
        with pytest.raises(ValueError, match="still name it the master"):
            setup.restart(primary)
    finally:
        processes = [*setup.servers, *setup.sentinels]
        setup.stop()
    assert all(p.process.poll() is not None for p in processes)
    assert not setup.workdir.exists()
