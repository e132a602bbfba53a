"""docs/ansible/ipsec-peers.yml, run by ansible-playbook (ansible.builtin.uri only) against the app
managing the lab's real charon: two peers made and brought up, a third removed, and a second run
that reports changed=0."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import LEAKS
from tests.integration.test_api import Client, ike_sas
from tests.lab import REMOTE_LAN, ROUTER_LAN
from webui.peers import Peer

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "docs" / "ansible" / "ipsec-peers.yml"
SECOND_REMOTE = "10.88.0.1"
KEYS = ("ansible-key-one-correct-horse-battery", "ansible-key-two-correct-horse-battery")
LEAKS.secrets.update(KEYS)
PEERS = [
    {"name": "ans-one", "local_ip": "192.0.2.1", "remote_gateway": "192.0.2.2",
     "local_id": "hq-one.example", "peer_id": "branch-one.example",
     "local_networks": ["198.51.100.0/24"], "remote_networks": ["203.0.113.0/24"], "psk": KEYS[0]},
    # IKEv1 with a MODP group: a playbook says exactly what the other side needs.
    {"name": "ans-two", "local_ip": "192.0.2.1", "remote_gateway": "192.0.2.2",
     "local_id": "hq-two.example", "peer_id": "branch-two.example", "ike_version": 1,
     "local_networks": ["198.51.100.0/24"], "remote_networks": ["10.88.0.0/24"],
     "ike_encryption": ["aes256"], "ike_integrity": ["sha256"], "ike_dh_groups": ["modp2048"],
     "esp_encryption": ["aes256"], "esp_integrity": ["sha256"], "esp_dh_groups": ["modp2048"],
     "psk": KEYS[1]},
]


def playbook(live, token, extra: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, WEBUI_URL=live.url, WEBUI_TOKEN=token, LC_ALL="C.UTF-8",
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    binary = Path(sys.executable).with_name("ansible-playbook")
    return subprocess.run([str(binary), str(PLAYBOOK), "-e", f"@{extra}"], env=env,
                          capture_output=True, text=True, timeout=240)


def recap(output: str) -> dict[str, int]:
    line = re.search(r"localhost\s*:\s*(.*)", output.split("PLAY RECAP", 1)[1]).group(1)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def test_the_playbook_makes_the_peers_and_a_second_run_changes_nothing(live, clean_lab, tmp_path):
    clean_lab.exec("remote", ["ip", "addr", "add", f"{SECOND_REMOTE}/24", "dev", "lo"])
    try:
        token, text = live.app.extensions["tokens"].create("ansible", None)
        LEAKS.secrets.add(text)
        api = Client(live.url, text)
        old = dict(PEERS[0], name="ans-old", remote_networks=["10.77.0.0/24"],
                   local_id="hq-old.example", peer_id="old.example")
        assert api("POST", "/peers", old)[0] == 201
        for body in PEERS:
            defaults = {"ike_encryption": ["aes256"], "ike_integrity": ["sha256"],
                        "ike_dh_groups": ["curve25519", "ecp256"], "esp_encryption": ["aes256gcm16"],
                        "esp_integrity": [], "esp_dh_groups": ["curve25519", "ecp256"]}
            # The remote mirrors what the router will hold: the form's defaults where not given.
            stored = {**defaults, **body}
            clean_lab.load_remote_mirror(Peer(**{k: tuple(v) if isinstance(v, list) else v
                                                 for k, v in stored.items()}))
        extra = tmp_path / "peers.json"
        extra.write_text(json.dumps({"peers_present": PEERS, "peers_absent": ["ans-old"],
                                     "tunnel_wait_seconds": 40}))

        first = playbook(live, text, extra)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
        assert recap(first.stdout)["changed"] == 2  # tasks that changed something: put, delete
        assert api("GET", "/peers/ans-old")[0] == 404
        assert {sa.name for sa in ike_sas(clean_lab, "ans-one") + ike_sas(clean_lab, "ans-two")} == \
            {"ans-one", "ans-two"}
        assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=1)
        assert clean_lab.ping("router", ROUTER_LAN, SECOND_REMOTE, count=1)
        before = sorted(sa.unique_id for sa in ike_sas(clean_lab, "ans-one") + ike_sas(clean_lab, "ans-two"))

        second = playbook(live, text, extra)
        assert second.returncode == 0, second.stdout[-3000:]
        assert recap(second.stdout)["changed"] == 0, second.stdout[-3000:]
        after = sorted(sa.unique_id for sa in ike_sas(clean_lab, "ans-one") + ike_sas(clean_lab, "ans-two"))
        assert after == before, "the second run left every IKE SA alone"
        for key in KEYS + (text,):
            assert key not in first.stdout + second.stdout + first.stderr + second.stderr
    finally:
        clean_lab.exec("remote", ["ip", "addr", "del", f"{SECOND_REMOTE}/24", "dev", "lo"], check=False)
