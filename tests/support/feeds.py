"""Reading a consumer group's feeds to the end in tests, on a standalone Redis or a cluster."""

from __future__ import annotations

from pipeline.log import Delivery, FeedReader, StreamId


async def every_delivery(reader: FeedReader) -> list[Delivery]:
    """Every entry on the group's feeds, oldest first, unacknowledged: read until a read
    finds none. Each read looks at every feed without blocking and waits for all their
    answers: a blocking read on a cluster returns what the first feeds to answer bring,
    so on a busy machine (the suite on three workers) a read blocked 300 ms found every
    feed empty while the one holding the entry had not answered yet. The append script
    writes a feed's entry with its event, so what was appended is there to be found."""
    await reader.ensure_group()
    found: list[Delivery] = []
    while batch := await reader.read(block_ms=None):
        found += batch
    found.sort(key=lambda d: StreamId.parse(d.entry_id))
    return found
