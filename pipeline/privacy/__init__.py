"""Personal data kept out of what the server keeps: redaction of what users say or type
(:mod:`~pipeline.privacy.redaction`)."""

from pipeline.privacy.redaction import ENTITIES, Entity, Redacted, redact, redacted_for, region_of

__all__ = ["ENTITIES", "Entity", "Redacted", "redact", "redacted_for", "region_of"]
