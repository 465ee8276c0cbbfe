"""schemathesis hooks for test_http.py (loaded through SCHEMATHESIS_HOOKS): NDJSON responses of
`GET /v1/topics/{topic}/records?format=ndjson` become a list of objects, one per line, so they are
checked against the schema that /openapi.json declares for them (an array of records, the last of
which may be an error)."""

import json

import schemathesis


@schemathesis.deserializer("application/x-ndjson")
def ndjson(ctx, response):
    return [json.loads(line) for line in response.content.decode().splitlines() if line]
