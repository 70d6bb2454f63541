"""docs/openapi.json is the document the service serves (regenerate: python tools/write_openapi.py)."""
import json
import os

from service_setup import ROOT
from video_tag.service.app import openapi_document


def test_the_kept_copy_matches_the_app():
    with open(os.path.join(ROOT, "docs", "openapi.json"), encoding="utf-8") as f:
        kept = f.read()
    assert kept == openapi_document(), "docs/openapi.json is stale: run python tools/write_openapi.py"
    paths = json.loads(kept)["paths"]
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/tag", "/v1/labels", "/healthz", "/readyz", "/metrics"} <= set(paths)
    assert set(paths["/v1/jobs"]["post"]["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
