"""The JSON API over HTTP against the lab's real charon: a tunnel made through the API comes up and
carries traffic, an unchanged PUT leaves its IKE SA alone, rekey gives new SPIs while a ping
passes, and a revoked token is refused at once."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.conftest import LEAKS
from tests.integration.conftest import wait_for
from webui.drivers import strongswan
from webui.drivers import vici_messages as vm
from tests.lab import REMOTE_LAN, ROUTER_LAN
from webui.peers import Peer

PSK = "api-lab-correct-horse-battery-staple"
LEAKS.secrets.add(PSK)
BODY = {"name": "api-site", "local_ip": "192.0.2.1", "remote_gateway": "192.0.2.2",
        "local_networks": [ROUTER_LAN.rsplit(".", 1)[0] + ".0/24"],
        "remote_networks": [REMOTE_LAN.rsplit(".", 1)[0] + ".0/24"], "psk": PSK}


class Client:
    def __init__(self, base: str, token: str):
        self.base, self.token = base, token

    def __call__(self, method: str, path: str, body=None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base}/api/v1{path}", data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


def client(live) -> tuple[Client, str]:
    token, text = live.app.extensions["tokens"].create("lab-tests", None)
    LEAKS.secrets.add(text)
    return Client(live.url, text), token.id


def ike_sas(lab, name):
    sas = vm.parse_sas(strongswan.stream(lab.router_vici, "list-sas", "list-sa", {"ike": name}))
    return [sa for sa in sas if sa.state == "ESTABLISHED"]


def mirror(lab, body):
    lab.load_remote_mirror(Peer(**{k: tuple(v) if isinstance(v, list) else v for k, v in body.items()}))


def test_a_tunnel_made_through_the_api_comes_up_and_carries_traffic(live, clean_lab):
    api, _ = client(live)
    status, created = api("POST", "/peers", BODY)
    assert status == 201, created
    mirror(clean_lab, {**BODY, **{k: created["peer"][k] for k in (
        "ike_encryption", "ike_integrity", "ike_dh_groups", "esp_encryption", "esp_integrity",
        "esp_dh_groups")}})
    api("POST", "/peers/api-site/connect")
    assert wait_for(lambda: api("GET", "/status")[1]["peers"]["api-site"]["state"] == "up", 15)
    assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=2)

    # An unchanged PUT (what a playbook's second run sends) keeps the very same IKE SA.
    before = [sa.unique_id for sa in ike_sas(clean_lab, "api-site")]
    status, again = api("PUT", "/peers/api-site", BODY)
    assert (status, again["changed"]) == (200, False)
    assert [sa.unique_id for sa in ike_sas(clean_lab, "api-site")] == before
    assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=1)

    # Rekey: new SPIs for the child, and the tunnel keeps passing traffic.
    spis = child_spis(clean_lab)
    assert spis, "the tunnel's CHILD_SA has an inbound SPI"
    status, answer = api("POST", "/peers/api-site/rekey")
    assert status == 200, answer
    assert wait_for(lambda: child_spis(clean_lab) and child_spis(clean_lab) != spis, 20), answer
    assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=2)

    status, routes = api("GET", "/routes")
    assert status == 200 and any(r["peer"] == "api-site" for r in routes["routes"])
    status, sas = api("GET", "/ipsec/status")
    assert status == 200 and any(sa["name"] == "api-site" for sa in sas["sas"])

    status, gone = api("DELETE", "/peers/api-site")
    assert (status, gone) == (200, {"changed": True})
    assert wait_for(lambda: not ike_sas(clean_lab, "api-site"), 5)


def child_spis(lab) -> set[str]:
    found = set()
    for event in strongswan.stream(lab.router_vici, "list-sas", "list-sa", {"ike": "api-site"}):
        for ike in event.values():
            for child in (ike.get(b"child-sas") or ike.get("child-sas") or {}).values():
                spi = child.get(b"spi-in") or child.get("spi-in")
                if spi:
                    found.add(spi.decode() if isinstance(spi, bytes) else spi)
    return found


def test_a_revoked_token_is_refused_at_once(live):
    api, token_id = client(live)
    assert api("GET", "/peers")[0] == 200
    live.app.extensions["tokens"].revoke(token_id)
    status, answer = api("GET", "/peers")
    assert status == 401 and "revoked" in answer["error"]
