"""Failed logins are limited per username at one address, per address and per username (core.login_limits)."""
import pytest
from django.test import Client

from core import login_limits
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch):
    """The limiter's clock, which the test moves by hand (windows are clock time // window)."""

    class Clock:
        now = 900.0 * 1_111_112  # the start of a 15-minute window

        def time(self) -> float:
            return self.now

    fake = Clock()
    monkeypatch.setattr(login_limits, "time", fake)
    return fake


def log_in(client: Client, username: str, password: str, ip: str = "10.0.0.1"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_after_five_failures_the_username_is_refused_with_429_until_the_window_ends(client, settings, clock):
    settings.LOGIN_FAILURE_WINDOW = 900
    make_user("lab1", "labeler")
    for _ in range(5):
        response = log_in(client, "lab1", "wrong")
        assert response.status_code == 200 and "did not match" in response.content.decode()

    response = log_in(client, "LAB1 ", "pw-lab1")  # even the right password, in any case or spacing
    page = response.content.decode()
    assert response.status_code == 429 and response["Retry-After"] == "900"
    assert "Too many failed logins. Try again in 15 minutes." in page and 'role="alert"' in page
    assert 'name="username"' in page  # the form is still there, for later
    assert "_auth_user_id" not in client.session

    clock.now += 899  # still the same window: 1 minute left
    assert "Try again in 1 minute." in log_in(client, "lab1", "pw-lab1").content.decode()
    clock.now += 1
    response = log_in(client, "lab1", "pw-lab1")
    assert response.status_code == 302 and "_auth_user_id" in client.session


def test_every_spelling_of_a_username_shares_one_count(settings, clock):
    """The login form applies NFKC, so fullwidth and mathematical letters log in as the plain name."""
    labeler3 = make_user("labeler3", "labeler")
    client = Client()
    response = log_in(client, "ｌａｂｅｌｅｒ３", "pw-labeler3")
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(labeler3.pk)
    client.logout()

    for spelling in ("labeler3", "LABELER3", "ｌａｂｅｌｅｒ３", "𝐥abeler3", "ＬＡＢＥＬＥＲ３"):
        assert log_in(client, spelling, "wrong").status_code == 200
    response = log_in(client, "labeler3", "pw-labeler3")
    assert response.status_code == 429 and "_auth_user_id" not in client.session


def test_a_stranger_failing_on_a_username_does_not_lock_its_owner_out(settings, clock):
    make_user("labeler3", "labeler")
    stranger, owner = Client(), Client()
    for _ in range(6):
        log_in(stranger, "labeler3", "guess", ip="203.0.113.9")
    assert log_in(stranger, "labeler3", "pw-labeler3", ip="203.0.113.9").status_code == 429
    response = log_in(owner, "labeler3", "pw-labeler3", ip="10.0.0.1")
    assert response.status_code == 302 and "_auth_user_id" in owner.session


def test_guessing_spread_over_many_addresses_is_stopped_by_the_username_limit(settings, clock):
    settings.LOGIN_FAILURE_USER_LIMIT = 10
    make_user("labeler3", "labeler")
    make_user("lab2", "labeler")
    client = Client()
    for address in ("203.0.113.1", "203.0.113.2"):
        for _ in range(4):  # each address stays under its own limit of 5 for the username
            assert log_in(client, "labeler3", "guess", ip=address).status_code == 200
    # 8 of 10: the owner still logs in, and that clears only their own address's count.
    assert log_in(client, "labeler3", "pw-labeler3", ip="10.0.0.1").status_code == 302
    client.logout()
    for _ in range(2):
        assert log_in(client, "labeler3", "guess", ip="203.0.113.3").status_code == 200

    response = log_in(client, "labeler3", "pw-labeler3", ip="10.0.0.1")
    assert response.status_code == 429 and response["Retry-After"] == "900"
    assert "Too many failed logins." in response.content.decode()
    assert log_in(client, "lab2", "pw-lab2", ip="203.0.113.3").status_code == 302  # other names are not held


def test_others_still_log_in_while_one_username_is_locked(settings, clock):
    make_user("lab1", "labeler")
    make_user("lab2", "labeler")
    attacker, colleague = Client(), Client()
    for _ in range(6):
        log_in(attacker, "lab1", "guess")
    assert log_in(attacker, "lab1", "guess").status_code == 429
    # Same office address, other username: the address is far from its own (higher) limit.
    response = log_in(colleague, "lab2", "pw-lab2")
    assert response.status_code == 302 and "_auth_user_id" in colleague.session


def test_one_address_trying_many_usernames_is_refused(settings, clock):
    settings.LOGIN_FAILURE_IP_LIMIT = 4
    make_user("lab9", "labeler")
    client = Client()
    for number in range(4):
        assert log_in(client, f"user{number}", "guess", ip="10.0.0.66").status_code == 200
    assert log_in(client, "lab9", "pw-lab9", ip="10.0.0.66").status_code == 429
    assert log_in(client, "lab9", "pw-lab9", ip="10.0.0.77").status_code == 302


def test_a_correct_password_clears_the_usernames_count(settings, clock):
    make_user("lab1", "labeler")
    client = Client()
    for _ in range(4):
        log_in(client, "lab1", "wrong")
    assert log_in(client, "lab1", "pw-lab1").status_code == 302
    client.logout()
    for _ in range(4):
        assert log_in(client, "lab1", "wrong").status_code == 200
    assert log_in(client, "lab1", "pw-lab1").status_code == 302


def test_behind_a_proxy_the_address_comes_from_the_configured_header(settings, clock):
    settings.CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    settings.LOGIN_FAILURE_IP_LIMIT = 2
    make_user("lab9", "labeler")
    client = Client()
    for name in ("a", "b"):
        log_in(client, name, "guess", ip="10.9.9.9")  # REMOTE_ADDR: the proxy, the same for everyone
    assert client.post("/login/", {"username": "c", "password": "x"}, REMOTE_ADDR="10.9.9.9",
                       HTTP_X_REAL_IP="192.0.2.1").status_code == 200  # fmt: skip
    for name in ("d", "e"):
        client.post("/login/", {"username": name, "password": "x"}, REMOTE_ADDR="10.9.9.9", HTTP_X_REAL_IP="192.0.2.2")
    assert client.post("/login/", {"username": "lab9", "password": "pw-lab9"}, REMOTE_ADDR="10.9.9.9",
                       HTTP_X_REAL_IP="192.0.2.2").status_code == 429  # fmt: skip


def test_a_client_cannot_pick_its_address_through_x_forwarded_for(settings, clock):
    """The proxy appends the address it saw; the entries a client put before it are not trusted."""
    settings.CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    settings.LOGIN_FAILURE_IP_LIMIT = 2
    client = Client()
    for n, spoofed in enumerate(("198.51.100.1", "198.51.100.2", "198.51.100.3")):
        response = client.post("/login/", {"username": f"guess{n}", "password": "x"},
                               HTTP_X_FORWARDED_FOR=f"{spoofed}, 192.0.2.7")  # fmt: skip
    assert response.status_code == 429  # three different "first" entries, one real address


def test_login_never_redirects_to_another_site(client):
    make_user("lab1", "labeler")
    response = client.post("/login/?next=https://evil.example/", {"username": "lab1", "password": "pw-lab1",
                                                                   "next": "https://evil.example/"})  # fmt: skip
    assert response.status_code == 302 and response.url == "/"
