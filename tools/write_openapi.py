"""Write the service's OpenAPI document to docs/openapi.json (tests/service/test_openapi.py checks the copy).

    python tools/write_openapi.py
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from video_tag.service.app import openapi_document  # noqa: E402

if __name__ == "__main__":
    path = os.path.join(ROOT, "docs", "openapi.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(openapi_document())
    print(f"wrote {path}")
