"""/healthz answers 200 when the database and the broker answer, 503 naming the one that does not."""
import pytest
from django.db import OperationalError
from django.urls import reverse


@pytest.mark.django_db
def test_healthy(client, settings):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_broker_down_is_503_naming_the_broker(client, broker_down):
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing" and body["database"] == "ok"
    assert body["broker"].startswith("failing: ")


@pytest.mark.django_db
def test_database_down_is_503_naming_the_database(client, monkeypatch):
    from annotate import health

    class Broken:
        def cursor(self):
            raise OperationalError("connection refused")

    monkeypatch.setattr(health, "connection", Broken())
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert response.json()["database"] == "failing: OperationalError"


def test_only_get(client):
    assert client.post(reverse("healthz")).status_code == 405
