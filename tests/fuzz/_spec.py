"""The OpenAPI spec the fuzzers generate requests from, and the checks every answer meets."""

from __future__ import annotations

import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from deployments.api import create_api

# The spec as the app declares it (no server needed to build it).
schema = schemathesis.openapi.from_dict(create_api().openapi())


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]
