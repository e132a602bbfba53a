"""The OpenWrt procd init script, run under `sh` with stand-ins for OpenWrt's UCI helpers and
procd's functions (no OpenWrt here: docs/OPENWRT.md says what this does not prove)."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INIT = ROOT / "packaging/openwrt/webui.init"
CONFIG = ROOT / "packaging/openwrt/webui.config"

# What /etc/rc.common and /lib/functions.sh would provide, recording instead of acting. UCI
# options come from UCI_<option> variables, as `uci` would give them from /etc/config/webui.
STANDINS = r"""
config_load() { [ "$1" = webui ] || echo "config_load [$1]"; }
config_get() {
    eval "value=\${UCI_$3-}"
    [ -n "$value" ] || value=$4
    eval "$1=\$value"
}
config_get_bool() {
    config_get "$@"
    case "$(eval echo \$$1)" in 1|on|true|yes|enabled) eval "$1=1" ;; *) eval "$1=0" ;; esac
}
procd_open_instance() { echo open; }
procd_close_instance() { echo close; }
procd_set_param() { printf 'param'; printf '\037%s' "$@"; echo; }
procd_add_reload_trigger() { echo "trigger [$1]"; }
mkdir() { echo "mkdir [$*]"; }
chmod() { echo "chmod [$*]"; }
"""


def run_init(**uci) -> list[str]:
    script = STANDINS + f". {INIT}\nstart_service\nservice_triggers\n"
    env = {"PATH": "/usr/bin:/bin", **{f"UCI_{k}": v for k, v in uci.items()}}
    done = subprocess.run(["sh", "-eu", "-c", script], capture_output=True, text=True, env=env,
                          timeout=10)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.splitlines()


def params(lines: list[str], name: str) -> list[str]:
    found = [line.split("\x1f")[2:] for line in lines if line.startswith(f"param\x1f{name}\x1f")
             or line == f"param\x1f{name}"]
    assert len(found) == 1, lines
    return found[0]


def test_defaults_give_procd_the_installed_ui_with_its_data_on_the_overlay():
    lines = run_init()
    assert lines[0] == "mkdir [-p /etc/webui]" and lines[1] == "chmod [0700 /etc/webui]"
    assert params(lines, "command") == ["/opt/webui/.venv/bin/python", "/opt/webui/run.py",
                                        "--no-lab"]
    env = dict(item.split("=", 1) for item in params(lines, "env"))
    assert env["WEBUI_DATA_DIR"] == "/etc/webui"
    assert (env["WEBUI_HOST"], env["WEBUI_PORT"]) == ("192.168.1.1", "8080")
    assert json.loads(env["WEBUI_IPSEC_RESTART_COMMAND"]) == ["/etc/init.d/swanctl", "restart"]
    assert params(lines, "respawn") == []
    assert params(lines, "stderr") == ["1"] and params(lines, "file") == ["/etc/config/webui"]
    assert lines[-2:] == ["close", "trigger [webui]"]


def test_uci_settings_reach_the_environment():
    lines = run_init(host="10.0.0.1", port="8443", data_dir="/etc/ipsec-ui", prefix="/srv/webui",
                     lan_interfaces="br-lan,br-guest", wan_interfaces="eth1")
    env = dict(item.split("=", 1) for item in params(lines, "env"))
    assert (env["WEBUI_HOST"], env["WEBUI_PORT"]) == ("10.0.0.1", "8443")
    assert env["WEBUI_DATA_DIR"] == "/etc/ipsec-ui"
    assert env["WEBUI_LAN_INTERFACES"] == "br-lan,br-guest" and env["WEBUI_WAN_INTERFACES"] == "eth1"
    assert params(lines, "command")[0] == "/srv/webui/.venv/bin/python"


def test_disabled_starts_nothing():
    assert run_init(enabled="0") == ["trigger [webui]"]


@pytest.mark.parametrize("option", ["enabled", "host", "port", "prefix", "data_dir",
                                    "lan_interfaces", "wan_interfaces", "ipsec_interfaces"])
def test_the_shipped_uci_file_names_every_option_the_script_reads(option):
    assert re.search(rf"^\s*option {option} '", CONFIG.read_text(), re.M)
    assert f"config_get{'_bool' if option == 'enabled' else ''} {option} main {option}" in \
        INIT.read_text().replace("\t", " ")
