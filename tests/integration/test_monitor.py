"""Issue 11 against the lab: tunnel state from charon's events, and a UI that a hung charon does
not break. The router's charon is real; so are its stops, restarts and the remote's changes."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time

from tests.integration.conftest import peer_form, wait_for
from tests.integration.test_app_ipsec import add_peer, cell, router_conns
from webui.drivers import strongswan


def concurrently(browser, paths) -> list[tuple[str, int, float, str]]:
    """GET every path at once (htmx), each in its own thread: (path, status, seconds, text)."""
    answers = []

    def get(path):
        started = time.monotonic()
        page = browser.get(path, htmx=True)
        answers.append((path, page.status, time.monotonic() - started, page.text))

    threads = [threading.Thread(target=get, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


def test_a_stopped_charon_answers_every_poll_without_a_500(serve, clean_lab):
    """Issue 11's measurement: charon stopped with SIGSTOP (a wedged daemon), then 8 concurrent
    polls and one Get IPsec status. Each answers within a second, none with a 500: they read the
    monitor's snapshot, which soon says since when charon has not answered. After SIGCONT the
    snapshot is current again without a click."""
    live = serve(VICI_TIMEOUT=2)
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form())
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
    pid = int(clean_lab._pidfile("router").read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        rounds = []
        for _ in range(3):  # at once, then while the monitor waits on charon, then after
            rounds.append(concurrently(browser, ["/peers/states"] * 8 + ["/commands/status"]))
            time.sleep(1.5)
        said = wait_for(lambda: "strongSwan has not answered since" in
                        browser.get("/peers/states", htmx=True).text, timeout=8)
        status = browser.get("/commands/status", htmx=True)
        started = time.monotonic()
        pages = [(path, browser.get(path).status) for path in ("/", "/peers/new")]
        pages_took = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    for answers in rounds:
        summary = [(path, status, round(took, 2)) for path, status, took, _ in answers]
        assert len(answers) == 9, summary
        assert all(status != 500 for _, status, _, _ in answers), summary
        assert all(took < 1 for _, _, took, _ in answers), summary
    assert said, "the polls never said that strongSwan does not answer"
    assert status.status == 503 and "strongSwan has not answered since" in status.text
    assert pages == [("/", 200), ("/peers/new", 200)] and pages_took < 2
    # charon back: the snapshot is current again and the tunnel still up, without a click
    assert wait_for(lambda: "strongSwan has not answered" not in
                    browser.get("/peers/states", htmx=True).text, timeout=2 + 2 + 1)
    assert cell(browser, "site-b").get("state") == "up"


def monitor_of(live):
    return live.applier.drivers.ipsec.monitor


def test_a_tunnel_taken_down_by_the_remote_shows_down_without_a_poll(live, clean_lab):
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form())
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
    monitor = monitor_of(live)
    monitor._polled_at = 0  # no page polls from here on: only charon's events can tell
    strongswan.stream(clean_lab.remote_vici, "terminate", "control-log",
                      {"ike": "site-b", "timeout": 2000})
    started = time.monotonic()
    down = wait_for(lambda: monitor.snapshot(polled=False).tunnels["site-b"].state != "up",
                    timeout=2)
    assert down, monitor.snapshot(polled=False).tunnels["site-b"]
    print(f"\ntunnel down in the snapshot {time.monotonic() - started:.3f} s after the remote "
          f"terminated it")
    assert [(t.old, t.new) for t in monitor.history("site-b")][-1][0] == "up"


def test_the_listener_killed_mid_stream_recovers_and_misses_no_change(live, clean_lab):
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form())
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
    monitor = monitor_of(live)
    version = monitor.snapshot(polled=False).version
    monitor._polled_at = 0
    # the change happens while the listener is gone: only the resync on reconnect can see it
    monitor._listener.shutdown(socket.SHUT_RDWR)
    strongswan.stream(clean_lab.remote_vici, "terminate", "control-log",
                      {"ike": "site-b", "timeout": 2000})
    assert wait_for(lambda: monitor.snapshot(polled=False).tunnels["site-b"].state != "up",
                    timeout=3)
    assert monitor.listening.wait(3) and monitor.snapshot(polled=False).version > version
    assert not monitor.snapshot(polled=False).problem


def test_swanctl_load_all_unloads_the_peers_and_they_come_back_without_a_click(live, clean_lab,
                                                                               tmp_path):
    """Issue 19: Debian's strongswan.service runs `swanctl --load-all` on start and reload; it
    unloads every connection that is not in swanctl.conf, the UI's included."""
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form())
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
    conf = tmp_path / "swanctl.conf"
    conf.write_text("connections {\n}\n")
    done = subprocess.run(["swanctl", "--load-all", "--noprompt", "--file", str(conf),
                           "--uri", f"unix://{clean_lab.router_vici}"],
                          capture_output=True, text=True, timeout=20)
    assert "1 unloaded" in done.stdout, done.stdout + done.stderr
    started = time.monotonic()
    assert wait_for(lambda: router_conns(clean_lab) == ["site-b"], timeout=10)
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up",
                    timeout=10 - (time.monotonic() - started))
    print(f"\npeer loaded again and up {time.monotonic() - started:.2f} s after swanctl --load-all")


def test_history_and_counters_reach_the_service(live, clean_lab):
    browser = live.browser()
    add_peer(browser, clean_lab, peer_form())
    assert wait_for(lambda: cell(browser, "site-b").get("state") == "up")
    history = live.applier.history("site-b")
    assert history and history[-1][2] == "up" and history[-1][0] <= time.time()
    assert all(len(sample) == 3 for sample in live.applier.counters("site-b"))
