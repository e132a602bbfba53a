"""Issue 13 against the lab's real charons: the swanctl.conf the UI writes is read back by the real
`swanctl --load-all` as the same configuration the UI loads over VICI (keys with quotes, `#`, `{`,
backslashes and newlines included), tunnels come up from it at "boot" without the UI, and the UI
starting afterwards changes nothing and tears no SA down."""
from __future__ import annotations

import dataclasses

from tests.integration.conftest import peer_form, wait_for
from tests.integration.test_app_ipsec import add_peer, as_peer, cell
from webui.drivers import strongswan, swanctl_conf
from webui.drivers.vici_messages import text
from tests.lab import REMOTE_LAN, ROUTER_LAN
from webui.peers import Peer

EXTRA_NET, EXTRA_HOST = "10.88.0.0/24", "10.88.0.1"


def swanctl_load_all(lab, conf) -> str:
    """What a boot runs (Debian's strongswan unit: swanctl --load-all), on the lab router's charon."""
    done = lab.exec("router", ["swanctl", "--load-all", "--noprompt", "--file", str(conf),
                               "--uri", f"unix://{lab.router_vici}"])
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def sas(lab) -> dict[str, tuple[str, str, frozenset[str]]]:
    """Per connection: (IKE SA state, its unique id, its CHILD_SAs' unique ids)."""
    found = {}
    for event in strongswan.stream(lab.router_vici, "list-sas", "list-sa"):
        for name, sa in event.items():
            children = frozenset(text(c.get("uniqueid")) for c in (sa.get("child-sas") or {}).values()
                                 if text(c.get("state")) == "INSTALLED")
            found[text(name)] = (text(sa.get("state")), text(sa.get("uniqueid")), children)
    return found


def all_up(lab, names) -> bool:
    now = sas(lab)
    return all(name in now and now[name][0] == "ESTABLISHED" and now[name][2] for name in names)


def extra_network(lab):
    lab.exec("remote", ["ip", "addr", "add", f"{EXTRA_HOST}/24", "dev", "lo"])


def drop_extra_network(lab):
    lab.exec("remote", ["ip", "addr", "del", f"{EXTRA_HOST}/24", "dev", "lo"])


def test_keys_swanctl_would_misread_reach_charon_as_the_ui_sends_them(clean_lab, tmp_path):
    """Two peers written by the product's builder, loaded by the real swanctl, authenticated by
    the remote with keys loaded over VICI: a key that swanctl read differently would fail."""
    extra_network(clean_lab)
    try:
        hard = Peer(name="quoted", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
                    local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24",),
                    psk='a"b#c{d}e\\f\ng\th end', local_id="quoted.router.example",
                    peer_id="quoted.remote.example")
        hexlike = dataclasses.replace(hard, name="hexlike", psk="0x6162636465666768",
                                      remote_networks=(EXTRA_NET,),
                                      local_id="hex.router.example", peer_id="hex.remote.example")
        conf = tmp_path / "webui-peers.conf"
        conf.write_text(swanctl_conf.render([hard, hexlike]))
        for peer in (hard, hexlike):
            clean_lab.load_remote_mirror(peer)
        out = swanctl_load_all(clean_lab, conf)
        assert "loaded ike secret 'ike-webui-quoted'" in out
        assert "successfully loaded 2 connections" in out
        assert wait_for(lambda: all_up(clean_lab, ["quoted", "hexlike"]), timeout=15), sas(clean_lab)
        assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN)
        assert clean_lab.ping("router", ROUTER_LAN, EXTRA_HOST)
    finally:
        drop_extra_network(clean_lab)


def test_tunnels_come_up_at_boot_from_the_file_and_the_ui_tears_nothing_down(serve, clean_lab,
                                                                              tmp_path):
    # The layout docs/BOOT.md describes: swanctl.conf includes conf.d/*.conf, whose webui.conf
    # includes the file in a directory only the UI's user may write.
    etc = tmp_path / "etc-swanctl"
    (etc / "conf.d").mkdir(parents=True)
    (etc / "webui").mkdir(mode=0o700)
    (etc / "swanctl.conf").write_text("include conf.d/*.conf\n")
    (etc / "conf.d" / "webui.conf").write_text(f"include {etc}/webui/*.conf\n")
    conf = etc / "webui" / "peers.conf"
    extra_network(clean_lab)
    try:
        # Two peers saved through the UI with the file option on.
        live = serve(SWANCTL_CONF=str(conf))
        browser = live.browser()
        first = peer_form(psk='first "key" #1 {x}')
        second = peer_form(name="site-c", remote_networks=EXTRA_NET, psk="0x-second-key-0000",
                           local_id="hq.router.example", peer_id="site-c.remote.example")
        add_peer(browser, clean_lab, first)
        add_peer(browser, clean_lab, second)
        for name in ("site-b", "site-c"):
            assert wait_for(lambda: cell(browser, name).get("state") == "up"), cell(browser, name)
        assert conf.stat().st_mode & 0o777 == 0o600
        live.close()

        # A boot without the UI: a fresh charon, then swanctl --load-all with the file.
        clean_lab.restart_router_charon()
        assert sas(clean_lab) == {}
        out = swanctl_load_all(clean_lab, etc / "swanctl.conf")
        assert "successfully loaded 2 connections" in out, out
        assert wait_for(lambda: all_up(clean_lab, ["site-b", "site-c"]), timeout=15), sas(clean_lab)
        assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN)
        assert clean_lab.ping("router", ROUTER_LAN, EXTRA_HOST)
        before = sas(clean_lab)

        # The UI starts again: its reconcile finds every connection equal and changes nothing.
        log = clean_lab.charon_log("router")
        offset = log.stat().st_size
        again = serve(SWANCTL_CONF=str(conf))
        new_lines = lambda: log.read_bytes()[offset:].decode(errors="replace")  # noqa: E731
        assert wait_for(lambda: all(f"updated vici connection: {n}" in new_lines()
                                    for n in ("site-b", "site-c")), timeout=15), new_lines()
        steps = again.applier.reconcile()  # and once more, as the Reload all peers button would
        assert all(step.ok for step in steps), steps
        assert "replaced vici connection" not in new_lines()
        assert "deleting IKE_SA" not in new_lines() and "closing CHILD_SA" not in new_lines()
        assert sas(clean_lab) == before, "an SA was torn down or renegotiated"
        assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN)
        assert clean_lab.ping("router", ROUTER_LAN, EXTRA_HOST)
    finally:
        drop_extra_network(clean_lab)
