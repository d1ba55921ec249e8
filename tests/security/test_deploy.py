"""Production settings pass Django's deployment checks and serve HTTPS only (test_embedded_run.py: the secret key)."""
import os
import secrets
import subprocess
import sys

from django.conf import settings

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "annotate.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://annotate.example.org",
}


def manage(*args: str, env: dict, tmp_path) -> subprocess.CompletedProcess:
    # The test run's own switches (conftest sets DJANGO_ALLOW_ASYNC_UNSAFE) are not production's.
    unset = {"DEBUG", "SECRET_KEY", "SECURE_COOKIES", "DJANGO_ALLOW_ASYNC_UNSAFE", "SECURE_PROXY_SSL_HEADER",
             "CLIENT_IP_HEADER", "HTTPS"}  # fmt: skip
    clean = {key: value for key, value in os.environ.items() if key not in unset}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR, env={**clean, "ANNOTATE_VAR_DIR": str(tmp_path), **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_production_settings_pass_check_deploy(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_behind_a_tls_proxy_check_deploy_warns_until_the_client_address_header_is_set(tmp_path):
    """Else every client has the proxy's address: 20 failed logins by anyone lock everyone out."""
    behind_proxy = {**PRODUCTION, "SECURE_PROXY_SSL_HEADER": "1"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=behind_proxy, tmp_path=tmp_path)
    assert result.returncode != 0 and "(annotate.W001)" in result.stderr, result.stdout + result.stderr
    assert "CLIENT_IP_HEADER=HTTP_X_REAL_IP" in result.stderr  # the hint says what to set

    env = {**behind_proxy, "CLIENT_IP_HEADER": "HTTP_X_REAL_IP"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)
    assert result.returncode == 0 and "no issues" in result.stdout, result.stdout + result.stderr


def test_production_settings_redirect_to_https_and_send_hsts(tmp_path):
    code = (
        "from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.DEBUG)"
    )
    result = manage("shell", "-c", code, env=PRODUCTION, tmp_path=tmp_path)
    assert result.stdout.splitlines()[-1].split() == ["True", "31536000", "True", "True", "False"], result.stderr


def test_behind_a_tls_proxy_https_requests_get_hsts_and_plain_ones_a_redirect(tmp_path):
    code = (
        "from django.test import Client; c = Client(); "
        "plain = c.get('/api/v1/'); tls = c.get('/api/v1/', HTTP_X_FORWARDED_PROTO='https'); "
        "health = c.get('/healthz'); "
        "print(plain.status_code, plain.get('Location'), tls.status_code, tls.get('Strict-Transport-Security'), "
        "health.status_code)"
    )
    env = {**PRODUCTION, "ALLOWED_HOSTS": "testserver", "SECURE_PROXY_SSL_HEADER": "1"}
    result = manage("shell", "-c", code, env=env, tmp_path=tmp_path)
    plain, location, tls, hsts, health = result.stdout.splitlines()[-1].split()
    assert (plain, location) == ("301", "https://testserver/api/v1/"), result.stderr
    assert (tls, hsts) == ("401", "max-age=31536000")  # through, to the API's own answer
    assert health != "301"  # load balancers probe /healthz over plain HTTP
