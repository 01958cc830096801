"""The console's sign-in form accepts the admin token exactly: not an empty field, not a part
of it, not the token with something added, not one differing in a single character.

(The bearer API has its near-miss test in tests/test_security.py; this is the form's.)"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

TOKEN = "console-admin-token-0123456789-abcdef"
OTHER_ADMIN_TOKEN = "second-admin-token-0123456789-uvwxyz"


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


def sign_in(client: Any, token: str) -> Any:
    form = {"token": token, "csrf_token": csrf_from(client.get("/admin/signin").text)}
    return client.post("/admin/signin", data=form)


@pytest.fixture
def client(make_client: Any) -> Any:
    return make_client({"gateway": {"admin_token": TOKEN}})


@pytest.mark.parametrize("given", [
    pytest.param("", id="empty"),
    pytest.param(TOKEN[:1], id="first-character"),
    pytest.param(TOKEN[:-1], id="all-but-the-last-character"),
    pytest.param(TOKEN + "x", id="token-plus-a-character"),
    pytest.param(TOKEN[:-1] + "g", id="last-character-changed"),
    pytest.param("D" + TOKEN[1:], id="first-character-changed"),
    pytest.param(TOKEN.upper(), id="other-case"),
    pytest.param(" " + TOKEN, id="leading-space"),
])
def test_anything_but_the_exact_token_is_refused(client: Any, given: str) -> None:
    response = sign_in(client, given)
    assert response.status_code == 401, response.headers.get("Location")
    assert "That admin token is not valid." in response.text
    # Still signed out: the console sends the browser back to the sign-in form.
    page = client.get("/admin/integrations")
    assert page.status_code == 302 and page.headers["Location"].startswith("/admin/signin")


def test_the_exact_token_signs_in(client: Any) -> None:
    response = sign_in(client, TOKEN)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/integrations"
    assert client.get("/admin/integrations").status_code == 200


def test_with_several_admins_each_token_signs_in_and_a_mix_of_them_does_not(make_client: Any) -> None:
    tokens = [{"name": "alice", "token": TOKEN}, {"name": "bob", "token": OTHER_ADMIN_TOKEN}]
    for admin in tokens:
        client = make_client({"gateway": {"admin_tokens": tokens}})
        assert sign_in(client, admin["token"]).status_code == 302, admin["name"]
    client = make_client({"gateway": {"admin_tokens": tokens}})
    mixed = TOKEN[:10] + OTHER_ADMIN_TOKEN[10:]
    assert sign_in(client, mixed).status_code == 401
    assert sign_in(client, "").status_code == 401


def test_a_sign_in_lasts_beyond_the_browser_session(client: Any) -> None:
    # A permanent session: the cookie carries an expiry (the browser keeps it when closed).
    cookie = sign_in(client, TOKEN).headers["Set-Cookie"]
    assert "Expires=" in cookie


def test_without_any_admin_token_the_console_is_off(make_client: Any) -> None:
    client = make_client({"gateway": {"admin_token": TOKEN}})
    runtime = client.application.extensions["gateway"]
    # Every runtime the gateway builds has a token (generated when none is configured); one
    # built otherwise must still refuse everyone, with a page that says why.
    runtime.settings = dataclasses.replace(runtime.settings, admin_token=None, admin_tokens=())
    page = client.get("/admin/signin")
    assert page.status_code == 503 and "The admin console is off" in page.text
    assert 'name="token"' not in page.text  # no form to guess at
