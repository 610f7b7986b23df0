"""Reading a consumer group's feeds to the end in tests, on a standalone Redis or a cluster."""

from __future__ import annotations

from pipeline.log import Delivery, FeedReader, StreamId


async def every_delivery(reader: FeedReader) -> list[Delivery]:
    """Every entry on the group's feeds, oldest first, unacknowledged: read until a read
    finds none. A cluster's feeds answer one by one and one read returns what the first to
    answer brought, so on a busy machine a single read may find an empty feed while another
    still holds entries."""
    await reader.ensure_group()
    found: list[Delivery] = []
    while batch := await reader.read(block_ms=300):
        found += batch
    found.sort(key=lambda d: StreamId.parse(d.entry_id))
    return found
