"""Markup in peer fields and in what strongSwan or the kernel report comes out escaped, everywhere.

The validator refuses markup in every peer field; these tests check that the refusal re-renders it
escaped, that a peer which got into the store some other way (a hand-edited file) is escaped on every
page, and that every string field of the driver dataclasses is escaped by the fragments showing it.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
from flask import render_template
from markupsafe import escape

import webui.drivers as drivers
from tests.conftest import valid_peer_form
from webui.paging import route_page
from webui.status import status_overview
from webui.peers import Peer

PAYLOADS = ["<img src=x onerror=alert(1)>", '"><script>alert(1)</script>', "'><svg onload=alert(1)>"]
# Fields whose refused value the form shows again (in the input, or quoted in the message).
ECHOED = ["name", "local_id", "peer_id", "local_ip", "remote_gateway", "local_networks",
          "remote_networks", "keying_retries", "dpd_delay", "ike_rekey_time", "child_rekey_time"]
CHOICES = ["ike_version", "ike_encryption", "ike_integrity", "ike_dh_groups", "esp_encryption",
           "esp_integrity", "esp_dh_groups", "firewall", "start_action", "dpd_action",
           "fragmentation"]
SINGLE = ("ike_version", "start_action", "dpd_action", "fragmentation")


def templates_dir() -> Path:
    return Path(drivers.__file__).resolve().parents[1] / "templates"


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("field", ECHOED + CHOICES)
def test_markup_in_a_peer_field_is_refused_and_shown_escaped(browser, data_dir, field, payload, htmx):
    value = [payload] if field in CHOICES and field not in SINGLE else payload
    r = browser.post("/peers", valid_peer_form(**{field: value}), htmx=htmx)
    assert r.status_code == 422
    body = r.get_data(as_text=True)
    assert payload not in body
    if field in ECHOED:
        assert str(escape(payload)) in body
    assert not (data_dir / "peers.json").exists() or "branch-a" not in (data_dir / "peers.json").read_text()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_markup_in_the_psk_is_accepted_and_never_shown(browser, payload):
    psk = f"psk {payload}"  # any printable characters make a PSK; the leak watch knows this one
    assert browser.post("/peers", valid_peer_form(psk=psk)).status_code == 303
    for url in ("/", "/peers/branch-a/edit", "/commands/status", "/peers/branch-a/other-side"):
        body = browser.get(url).get_data(as_text=True)
        assert psk not in body and str(escape(psk)) not in body


def test_a_stored_peer_with_markup_is_escaped_on_every_page(app, browser):
    payload = PAYLOADS[0]  # no "/", so it fits in a URL path segment
    text = {f.name: payload for f in dataclasses.fields(Peer) if f.type == "str" and f.name != "psk"}
    peer = Peer(local_networks=(payload,), remote_networks=(payload,), psk="x" * 20, **text)
    app.extensions["webui"].store.add(peer)
    urls = ["/", "/peers/new", f"/peers/{payload}/edit", f"/peers/{payload}/delete", "/peers/states",
            f"/peers/{payload}/other-side",
            "/commands/status", "/commands/routes", "/commands/interfaces"]
    for url in urls:
        for htmx in (False, True):
            r = browser.get(url, htmx=htmx)
            assert r.status_code == 200, url
            assert payload not in r.get_data(as_text=True), url
    assert str(escape(payload)) in browser.get("/").get_data(as_text=True)


def filled(cls, payload: str):
    """An instance of a driver dataclass with the payload in every str field, recursively."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        if hint is str:
            values[f.name] = payload
        elif hint is bool:
            values[f.name] = True
        elif hint is int or int in args:
            values[f.name] = 7
        elif hint is float:
            values[f.name] = 7.0
        elif args and dataclasses.is_dataclass(args[0]):
            values[f.name] = (filled(args[0], payload),)
        elif args and args[0] is str:
            values[f.name] = (payload,)
        else:
            raise AssertionError(f"{cls.__name__}.{f.name}: teach filled() about {hint}")
    return cls(**values)


FRAGMENTS = {
    "commands/_status.html": lambda p: dict(error="", overview=status_overview(
        [Peer(name="branch-a", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
              local_networks=("10.0.0.0/24",), remote_networks=("10.1.0.0/24",), psk="x" * 20)],
        drivers.IPsecStatus(
            connections=(filled(drivers.Connection, p),
                         dataclasses.replace(filled(drivers.Connection, p), managed=False)),
            sas=(filled(drivers.IkeSA, p), dataclasses.replace(filled(drivers.IkeSA, p), name="branch-a"))))),
    "commands/_interfaces.html": lambda p: dict(interfaces=(filled(drivers.Interface, p),)),
    "commands/_routes.html": lambda p: dict(page=route_page(filled(drivers.Routes, p).routes, p, 1, 10),
                                            rules=filled(drivers.Routes, p).rules),
    "commands/_steps.html": lambda p: dict(title=p, steps=[filled(drivers.Step, p)]),
    "commands/_error.html": lambda p: dict(title=p, error=p),
    "ipsec/_states.html": lambda p: dict(
        peers=[Peer(name=p, local_ip="192.0.2.1", remote_gateway="192.0.2.2", local_networks=("10.0.0.0/24",),
                    remote_networks=("10.1.0.0/24",), psk="x" * 20)],
        states={p: dataclasses.replace(filled(drivers.TunnelState, p), state="down")},
        status_error=p, not_applied={}, lacking={}),
}


def test_every_fragment_showing_driver_data_is_tested():
    shows_driver_data = {f"commands/{p.name}" for p in (templates_dir() / "commands").glob("_*.html")}
    shows_driver_data -= {"commands/_close.html", "commands/_empty.html", "commands/_ike_sa.html",
                          # counts only (tunnels up, peers enabled): no text from a driver
                          "commands/_restart_dialog.html", "commands/_restart_question.html"}
    assert shows_driver_data | {"ipsec/_states.html"} == set(FRAGMENTS)


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("template", sorted(FRAGMENTS))
def test_values_from_strongswan_and_the_kernel_are_escaped(app, template, payload):
    with app.test_request_context("/"):
        html = render_template(template, **FRAGMENTS[template](payload))
    assert payload not in html
    assert str(escape(payload)) in html


def test_nothing_is_marked_safe():
    root = templates_dir().parent
    for path in list(templates_dir().rglob("*.html")) + list(root.rglob("*.py")):
        text = path.read_text()
        assert "|safe" not in text.replace(" ", "") and "Markup(" not in text, path


def test_templates_have_no_inline_script_style_or_handlers():
    for path in templates_dir().rglob("*.html"):
        text = path.read_text()
        for banned in (" style=", "<style", "hx-on", " onclick=", " onload=", "javascript:"):
            assert banned not in text, f"{path.name}: {banned}"
        for script in text.split("<script")[1:]:
            assert script.lstrip().startswith("src="), f"{path.name}: inline script"
