"""The OpenAPI schema: valid, warning-free, documented with examples; its docs page is served locally."""
import re

import pytest
import yaml
from django.core.management import call_command
from django.urls import reverse

from tests.api.conftest import token_header

pytestmark = pytest.mark.django_db

METHODS = {"get", "post", "patch", "put", "delete"}


@pytest.fixture(scope="module")
def schema(tmp_path_factory, django_db_blocker) -> dict:
    path = tmp_path_factory.mktemp("schema") / "schema.yaml"
    with django_db_blocker.unblock():
        # --fail-on-warn turns every generator warning (an untyped field, an unknown path parameter) into an error.
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return yaml.safe_load(path.read_text())


def operations(schema: dict):
    for url, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield f"{method.upper()} {url}", operation


def test_the_schema_validates_without_warnings_and_covers_every_endpoint(schema):
    urls = set(schema["paths"])
    for expected in [
        "/api/v1/queues/", "/api/v1/queues/{id}/", "/api/v1/queues/{id}/prompts/", "/api/v1/prompts/",
        "/api/v1/prompts/{id}/", "/api/v1/demonstrations/", "/api/v1/rankings/{id}/", "/api/v1/pair-datasets/",
        "/api/v1/pair-datasets/{id}/download/", "/api/v1/runs/", "/api/v1/runs/{id}/cancel/",
        "/api/v1/reward-models/", "/api/v1/reward-models/{id}/activate/", "/api/v1/reward-models/{id}/score/",
        "/api/v1/policies/", "/api/v1/policies/{id}/retire/", "/api/v1/sft-runs/", "/api/v1/sft-runs/{id}/cancel/",
        "/api/v1/evaluation-rounds/", "/api/v1/evaluation-rounds/{id}/",
    ]:  # fmt: skip
        assert expected in urls
    assert "tokenAuth" in schema["components"]["securitySchemes"]


def test_every_operation_has_a_response_schema_and_an_example(schema):
    for name, operation in operations(schema):
        success = [code for code in operation["responses"] if code.startswith("2")]
        assert success, name
        bodies = [operation["responses"][code].get("content", {}) for code in success]
        assert all(bodies), f"{name} has no response body"
        examples = [
            media.get("examples")
            for content in [*bodies, operation.get("requestBody", {}).get("content", {})]
            for media in content.values()
        ]
        has_file = any("application/octet-stream" in body for body in bodies)
        assert has_file or any(examples), f"{name} has no example"
        if name.startswith(("POST", "PATCH")) and not name.endswith(("/activate/", "/cancel/", "/retire/")):
            assert operation.get("requestBody"), f"{name} has no request schema"


def test_the_docs_page_uses_the_locally_served_swagger_ui(client, ml_user):
    client.force_login(ml_user)
    response = client.get(reverse("api-docs"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "a script or style from another host"
    assert "cdn" not in page.lower()


def test_schema_and_docs_need_a_signed_in_user(client, labeler, ml_user):
    assert client.get(reverse("api-schema")).status_code in (401, 403)
    assert client.get(reverse("api-docs")).status_code in (401, 403)
    client.force_login(labeler)  # any role may read the schema
    assert client.get(reverse("api-schema")).status_code == 200
    client.logout()
    assert client.get(reverse("api-schema"), **token_header(ml_user)).status_code == 200
