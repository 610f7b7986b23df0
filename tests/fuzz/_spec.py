"""The OpenAPI spec the fuzzers generate requests from, and the checks every answer meets."""

from __future__ import annotations

import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from deployments.api import create_api
from tests.support.sdp import offers

# The spec as the app declares it (no server needed to build it).
schema = schemathesis.openapi.from_dict(create_api().openapi())

# WebRTC offers: a browser's offer mutated, not random text (which only ever reaches the
# first line's check)
schemathesis.openapi.media_type("application/sdp", offers.map(str.encode))


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]


def give_upload(case: schemathesis.Case, upload: bytes) -> None:
    """A multipart case's ``file`` field, as an upload can carry it: a positive case gets
    ``upload`` (a file the route takes); a negative one whose ``file`` is a JSON value
    other than a string loses the field instead. Multipart sends any value as a file's
    bytes, so "a file that is an object" is a valid upload of JSON text, not the schema
    violation schemathesis meant; a missing file is one the route must refuse."""
    multipart = (case.media_type or "").startswith("multipart/")
    if not multipart or not isinstance(case.body, dict) or "file" not in case.body:
        return  # a JSON body's "file" is any other property
    positive = case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE
    if positive:
        case.body["file"] = upload
    elif not isinstance(case.body["file"], str | bytes):
        del case.body["file"]
