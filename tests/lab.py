"""The two-site IPsec lab: a router and a remote site in network namespaces, each with its own charon.

Used by the integration tests (tests/integration/conftest.py) and by hand, as root:

    ./dev lab up      [--prefix wuilab] [--workdir lab-run/PREFIX]   # start, print the UI's settings
    ./dev lab status  [--prefix wuilab] [--workdir lab-run/PREFIX]   # namespaces, charons, SAs
    ./dev lab down    [--prefix wuilab] [--workdir lab-run/PREFIX]   # stop charons, delete netns
    ./dev lab restart-router [--prefix ...] [--workdir ...]          # what "Restart IPsec" runs
    add `--minimal` to `up` or `restart-router` for a small router's strongSwan (MINIMAL_PLUGINS)

(`./dev lab ARGS` is `.venv/bin/python -m tests.lab ARGS`.) `up` prints the WEBUI_* settings that
point the UI at the lab router (socket, restart command, namespace, LAN, WAN and tunnel interfaces)
as shell assignments; watch a charon with `swanctl --log --uri unix://$PWD/lab-run/wuilab/router.vici`.

Layout (documentation address ranges only; traffic never leaves the namespaces made here):

    {prefix}-lanhost eth0 198.51.100.10/24 --- lan0 198.51.100.1/24 {prefix}-router
    {prefix}-router  wan0 192.0.2.1/24     --- wan0 192.0.2.2/24    {prefix}-remote  (LAN 203.0.113.1/24 on lo)

and the same in IPv6 (2001:db8::/32) on the same links: WAN 2001:db8::1 and ::2 (/64), the
router's LAN 2001:db8:1::/64 (router ::1, LAN host ::10), the remote's LAN 2001:db8:2::1/64 on lo.

The kernel here has no ESP, so both charons use kernel-libipsec (userspace ESP over UDP 4500, TUN
`ipsec0`, routes in table 220); each runs with its own strongswan.conf and a private /run so their pid
files do not collide. Every name derives from `prefix`, so labs with different prefixes coexist.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from webui import capabilities
from webui.drivers import DriverError
from webui.drivers import strongswan, vici_messages
from webui.peers import Peer

CHARON = "/usr/lib/ipsec/charon"
SITES = ("router", "remote", "lanhost")
CHARON_SITES = ("router", "remote")
ROUTER_WAN, REMOTE_WAN = "192.0.2.1", "192.0.2.2"
ROUTER_LAN, LANHOST = "198.51.100.1", "198.51.100.10"
REMOTE_LAN = "203.0.113.1"
ROUTER_WAN6, REMOTE_WAN6 = "2001:db8::1", "2001:db8::2"
ROUTER_LAN6, LANHOST6 = "2001:db8:1::1", "2001:db8:1::10"
REMOTE_LAN6 = "2001:db8:2::1"

# A small router's strongSwan build (OpenWrt's strongswan-minimal, say): AES-CBC, SHA-1/2, HMAC and
# the MODP groups; no openssl, so no ECP, no Curve25519, no AES-GCM. The router's charon can run
# with just these (`--minimal`) to test the UI against such a build.
MINIMAL_PLUGINS = ("random nonce aes sha1 sha2 hmac gmp pem pkcs1 pubkey x509 kdf vici "
                   "kernel-libipsec kernel-netlink socket-default updown")
MODULAR = "load_modular = yes"

CONF = """\
charon {{
  {loading}
  # Every lab tunnel runs between the same two addresses: the default per-peer-IP limit of 5
  # half-open IKE_SAs (and cookies from 10) would throttle tests, not model a real remote.
  block_threshold = 1000
  cookie_threshold = 1000
  # Dead peer detection declares a peer dead when the check's retransmissions run out: about 165 s
  # with charon's defaults (5 tries from 4 s, x1.8). These give up after about 11 s, so a test sees
  # DPD act within a few intervals; still far beyond any answer between the two namespaces.
  retransmit_timeout = 1.5
  retransmit_base = 1.4
  retransmit_tries = 3
  # charon answers IKEv1 aggressive mode with a PSK only when told it may (its offline guessing
  # risk is the UI's warning to make); the lab allows it so that option can be tested.
  i_dont_care_about_security_and_use_aggressive_mode_psk = yes
  {settings}
  plugins {{
    include /etc/strongswan.d/charon/*.conf
    vici {{
      socket = unix://{socket}
    }}
    kernel-libipsec {{
      load = yes
    }}
  }}
  filelog {{
    lab {{
      path = {log}
      time_format = %H:%M:%S
      flush_line = yes
      default = 1
      ike = 2
    }}
  }}
}}
"""


def _run(argv, check=True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kw)


class Lab:
    """Two sites and a LAN host in network namespaces named `{prefix}-router` and so on."""

    def __init__(self, prefix: str = "wuilab", workdir: Path | str | None = None):
        self.prefix = prefix
        self.workdir = Path(workdir or Path.cwd() / "lab-run" / prefix).absolute()
        self._charons: dict[str, subprocess.Popen] = {}

    # --- names -----------------------------------------------------------------------------------
    def netns(self, site: str) -> str:
        return f"{self.prefix}-{site}"

    @property
    def router_netns(self) -> str:
        return self.netns("router")

    @property
    def remote_netns(self) -> str:
        return self.netns("remote")

    def vici(self, site: str) -> Path:
        return self.workdir / f"{site}.vici"

    @property
    def router_vici(self) -> Path:
        return self.vici("router")

    @property
    def remote_vici(self) -> Path:
        return self.vici("remote")

    def charon_log(self, site: str) -> Path:
        return self.workdir / f"{site}.log"

    @property
    def restart_command(self) -> list[str]:
        """What a ViciDriver runs for "Restart IPsec" so the lab router's charon really restarts."""
        return [sys.executable, "-m", "tests.lab", "restart-router",
                "--prefix", self.prefix, "--workdir", str(self.workdir)]

    # --- life cycle ------------------------------------------------------------------------------
    def start(self) -> Lab:
        self.cleanup()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._make_network()
        for site in CHARON_SITES:
            self._write_conf(site)
            self._spawn_charon(site)
        for site in CHARON_SITES:
            self._wait_for_vici(site)
        return self

    def stop(self) -> None:
        self.cleanup()

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def cleanup(self) -> None:
        """Stop our charons and delete our namespaces, also leftovers of a crashed run."""
        for site in CHARON_SITES:
            self._kill_charon(site)
        for site in SITES:
            _run(["ip", "netns", "delete", self.netns(site)], check=False)

    def _make_network(self) -> None:
        router, remote, lanhost = (self.netns(s) for s in SITES)
        batch = [f"netns add {ns}" for ns in (router, remote, lanhost)] + [
            f"link add wan0 netns {router} type veth peer name wan0 netns {remote}",
            f"link add lan0 netns {router} type veth peer name eth0 netns {lanhost}",
        ]
        _run(["ip", "-batch", "-"], input="\n".join(batch) + "\n")
        setup = {
            router: [f"addr add {ROUTER_WAN}/24 dev wan0", f"addr add {ROUTER_LAN}/24 dev lan0",
                     "link set lo up", "link set wan0 up", "link set lan0 up"],
            remote: [f"addr add {REMOTE_WAN}/24 dev wan0", f"addr add {REMOTE_LAN}/24 dev lo",
                     "link set lo up", "link set wan0 up"],
            lanhost: [f"addr add {LANHOST}/24 dev eth0", "link set lo up", "link set eth0 up",
                      f"route add default via {ROUTER_LAN}"],
        }
        # IPv6 beside IPv4 on the same links; nodad, so an address is usable at once, not after
        # duplicate address detection's second or so.
        setup[router] += [f"addr add {ROUTER_WAN6}/64 dev wan0 nodad",
                          f"addr add {ROUTER_LAN6}/64 dev lan0 nodad"]
        setup[remote] += [f"addr add {REMOTE_WAN6}/64 dev wan0 nodad",
                          f"addr add {REMOTE_LAN6}/64 dev lo"]
        setup[lanhost] += [f"addr add {LANHOST6}/64 dev eth0 nodad",
                           f"route add ::/0 via {ROUTER_LAN6}"]
        for ns, commands in setup.items():
            _run(["ip", "-n", ns, "-batch", "-"], input="\n".join(commands) + "\n")
        _run(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1",
              "net.ipv6.conf.all.forwarding=1"])

    # --- charons ---------------------------------------------------------------------------------
    def _pidfile(self, site: str) -> Path:
        return self.workdir / f"{site}.pid"

    def _conf(self, site: str) -> Path:
        return self.workdir / f"{site}.strongswan.conf"

    def _write_conf(self, site: str, plugins: str | None = None, settings: str = "") -> None:
        """The charon's strongswan.conf: Debian's plugins (None), or exactly `plugins`; `settings`
        are more lines for its `charon` section."""
        loading = MODULAR if plugins is None else f"load_modular = no\n  load = {plugins}"
        self._conf(site).write_text(CONF.format(loading=loading, settings=settings,
                                                socket=self.vici(site), log=self.charon_log(site)))

    def _custom(self, site: str) -> bool:
        return self._conf(site).read_text() != CONF.format(
            loading=MODULAR, settings="", socket=self.vici(site), log=self.charon_log(site))

    @property
    def router_plugins(self) -> str | None:
        """The router charon's plugin list, None for Debian's full set: what its conf file says, so
        `restart-router` (another process) keeps the build the router runs."""
        for line in self._conf("router").read_text().splitlines():
            if line.strip().startswith("load = "):
                return line.split("=", 1)[1].strip()
        return None

    def _spawn_charon(self, site: str) -> None:
        conf = self._conf(site)
        self.vici(site).unlink(missing_ok=True)
        env = {**os.environ, "STRONGSWAN_CONF": str(conf)}
        # `ip netns exec` and `unshare` exec in place, and so does the shell, so the pid is charon's.
        argv = ["ip", "netns", "exec", self.netns(site), "unshare", "-m", "sh", "-c",
                f"mount -t tmpfs tmpfs /run && exec {CHARON}"]
        with open(self.workdir / f"{site}.stderr", "ab") as err:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        self._charons[site] = proc
        self._pidfile(site).write_text(str(proc.pid))

    def _wait_for_vici(self, site: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                strongswan.call(self.vici(site), "version", timeout=1.0)
                return
            except DriverError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {site} charon did not answer on {self.vici(site)} "
                                       f"within {timeout:g} s; see {self.charon_log(site)}")
                time.sleep(0.05)

    def _kill_charon(self, site: str) -> None:
        pidfile = self._pidfile(site)
        try:
            pid = int(pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return
        proc = self._charons.pop(site, None)
        if self._is_our_charon(pid, site):
            try:
                os.kill(pid, signal.SIGKILL)  # a lab charon holds nothing worth a graceful stop
            except ProcessLookupError:
                pass
        if proc is not None and proc.pid == pid:
            proc.wait(timeout=5)  # our child: reap it
        else:
            if proc is not None:
                proc.poll()  # a charon we started and someone else (restart-router) killed
            _wait_gone(pid)
        pidfile.unlink(missing_ok=True)
        self.vici(site).unlink(missing_ok=True)

    def _is_our_charon(self, pid: int, site: str) -> bool:
        """A stale pid file may name a pid reused by someone else's process: check before killing."""
        conf = f"STRONGSWAN_CONF={self.workdir / f'{site}.strongswan.conf'}".encode()
        try:
            return conf in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            return False

    def stop_remote_charon(self) -> None:
        """The remote site's charon gone without a word, as when its router loses power."""
        self._kill_charon("remote")

    def start_remote_charon(self) -> None:
        self._spawn_charon("remote")
        self._wait_for_vici("remote")

    def stop_router_charon(self) -> None:
        self._kill_charon("router")

    def start_router_charon(self) -> None:
        self._spawn_charon("router")
        self._wait_for_vici("router")

    def restart_router_charon(self, plugins: str | None | bool = False, settings: str = "") -> None:
        """Restart the router's charon with the same configuration, or with `plugins` (None:
        Debian's full set, MINIMAL_PLUGINS: a small router's build) and `settings`."""
        self.stop_router_charon()
        if plugins is not False or settings:
            self._write_conf("router", None if plugins is False else plugins, settings)
        self.start_router_charon()

    # --- using the sites -------------------------------------------------------------------------
    def exec(self, site: str, argv, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(["ip", "netns", "exec", self.netns(site), *argv], **kw)

    def ping(self, site: str, source: str, dest: str, count: int = 3,
             timeout: float = 1.0) -> bool:
        """Whether `dest` answers pings from `source` in `site` (any reply counts: the first
        packets may be spent bringing a trap-started tunnel up)."""
        argv = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", f"{timeout:g}",
                "-I", source, dest]
        return self.exec(site, argv).returncode == 0

    def load_remote_mirror(self, peer: Peer, psk: str | None = None) -> None:
        """Configure the remote charon as the other end of `peer` (a different `psk` to test
        authentication failures). The remote only responds: the router is the one that initiates."""
        remote = vici_messages.mirror(peer, psk)
        conn = vici_messages.load_conn(remote)
        for child in conn[remote.name]["children"].values():
            child["start_action"] = "none"
        strongswan.call(self.remote_vici, "load-shared", vici_messages.load_shared(remote))
        strongswan.call(self.remote_vici, "load-conn", conn)

    def remove_remote(self, name: str) -> None:
        strongswan.call(self.remote_vici, "unload-conn", {"name": name})
        strongswan.call(self.remote_vici, "unload-shared", {"id": vici_messages.shared_key_id(name)})

    def reset(self) -> None:
        """Between tests: router charon running, and neither charon holding connections, keys or SAs."""
        if self._custom("router"):
            self.restart_router_charon(None)  # a test left it another build or other settings
        elif not _alive_pidfile(self._pidfile("router")):
            self.start_router_charon()
        if not _alive_pidfile(self._pidfile("remote")):
            self.start_remote_charon()  # a test killed it
        for site in CHARON_SITES:
            with strongswan.session(self.vici(site)) as vs:
                for name in strongswan.request(vs, "get-conns").get("conns", []):
                    strongswan.request(vs, "unload-conn", {"name": name})
                for sa in vici_messages.parse_sas(strongswan.streamed(vs, "list-sas", "list-sa")):
                    try:
                        strongswan.streamed(vs, "terminate", "control-log",
                                            {"ike-id": str(sa.unique_id), "timeout": 2000})
                    except DriverError:
                        pass  # already gone
                strongswan.request(vs, "clear-creds")

    def status(self) -> str:
        lines = []
        for site in SITES:
            alive = _run(["ip", "netns", "exec", self.netns(site), "true"], check=False)
            lines.append(f"{self.netns(site)}: {'up' if alive.returncode == 0 else 'absent'}")
        for site in CHARON_SITES:
            try:
                sas = strongswan.stream(self.vici(site), "list-sas", "list-sa")
                names = [f"{sa.name}:{sa.state}" for sa in vici_messages.parse_sas(sas)]
                lines.append(f"{site} charon on {self.vici(site)}: SAs {names or 'none'}")
            except DriverError as err:
                lines.append(f"{site} charon: {err}")
        return "\n".join(lines)


def available() -> bool:
    """Whether this machine can run the lab: root, strongSwan's charon, and iproute2."""
    return os.geteuid() == 0 and os.path.exists(CHARON) and shutil.which("ip") is not None


def ui_config(lab: Lab) -> dict:
    """The UI's configuration for managing the lab router as if it were the machine's own."""
    return {
        "DRIVER": "real",
        "VICI_SOCKET": str(lab.router_vici),
        "NETNS": lab.router_netns,
        "IPSEC_RESTART_COMMAND": lab.restart_command,
        "LAN_INTERFACES": "lan0",
        "WAN_INTERFACES": "wan0",
        "IPSEC_INTERFACES": "ipsec0",
    }


def demo_peer(psk: str, supported: frozenset[str] | None = None) -> Peer:
    """The peer `run.py` seeds into an empty store: the lab router's tunnel to the remote site,
    with the Modern preset as the router's charon (`supported`) can honour it."""
    return Peer(name="lab-remote", local_ip=ROUTER_WAN, remote_gateway=REMOTE_WAN,
                local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24",), psk=psk,
                **capabilities.preset("modern", supported))


def router_algorithms(lab: Lab) -> frozenset[str]:
    """What the lab router's charon supports, as catalogue keywords."""
    return vici_messages.parse_algorithms(strongswan.call(lab.router_vici, "get-algorithms"))


def prepare_demo(lab: Lab, store) -> None:
    """Before the UI starts: make the remote site the other end of every stored peer that points
    at it, and seed the demo peer into an empty store, so a newcomer sees a real tunnel come up."""
    import secrets
    peers = store.all()
    if not peers:
        peers = [demo_peer(secrets.token_urlsafe(24), router_algorithms(lab))]
        store.add(peers[0])
    for peer in peers:
        if peer.remote_gateway == REMOTE_WAN:
            lab.load_remote_mirror(peer)


def _alive(pid: int) -> bool:
    """Whether `pid` still runs or holds resources. A zombie whose reaper (not us) is slow counts
    as gone, but only once its other threads are gone too: a killed charon's leader turns zombie
    while a worker thread may still hold the IKE ports, and a new charon then cannot bind them."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" or threads > 1


def _alive_pidfile(path: Path) -> bool:
    try:
        return _alive(int(path.read_text()))
    except (FileNotFoundError, ValueError):
        return False


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def ui_environment(lab: Lab) -> str:
    """ui_config as WEBUI_* shell assignments (`env $(...)` or a systemd EnvironmentFile)."""
    import json
    import shlex
    lines = []
    for key, value in ui_config(lab).items():
        text = value if isinstance(value, str) else json.dumps(value)
        lines.append(f"WEBUI_{key}={shlex.quote(text)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="./dev lab", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("up", "down", "status", "restart-router"))
    parser.add_argument("--prefix", default="wuilab")
    parser.add_argument("--workdir", help="default: lab-run/PREFIX")
    parser.add_argument("--minimal", action="store_true",
                        help="up, restart-router: the router's charon with MINIMAL_PLUGINS only")
    args = parser.parse_args(argv)
    lab = Lab(args.prefix, args.workdir)
    if args.command == "up":
        lab.start()
        if args.minimal:
            lab.restart_router_charon(MINIMAL_PLUGINS)
        print(f"# the lab is up; run the UI against its router with these settings:\n"
              f"{ui_environment(lab)}\n"
              f"# {lab.status().replace(chr(10), chr(10) + '# ')}")
    elif args.command == "down":
        lab.stop()
    elif args.command == "restart-router":
        lab.restart_router_charon(MINIMAL_PLUGINS if args.minimal else False)
    else:
        print(lab.status())
    return 0


if __name__ == "__main__":
    sys.exit(main())
