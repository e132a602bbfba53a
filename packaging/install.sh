#!/usr/bin/env bash
# Install, upgrade or remove the web UI as a systemd service on Debian 12 (docs/INSTALL.md).
# Run through ./dev, as root, from a checkout:
#   ./dev install   [--root DIR] [--prefix /opt/webui] [--data-dir /var/lib/webui]
#                   [--host ADDRESS] [--port 8080]
#   ./dev upgrade   [same options]
#   ./dev uninstall [--root DIR] [--prefix /opt/webui] [--data-dir /var/lib/webui] [--purge]
# --root installs into DIR as if it were / (a scratch root, an image being built): nothing outside
# it is touched, no package is installed and no service is started; paths inside the installed
# files are the ones the target will see.
set -euo pipefail
cd "$(dirname "$0")/.."

# charon-systemd is what gives Debian 12 its strongswan.service (charon-systemd, configured by
# swanctl); strongswan-starter's unit is strongswan-starter.service (the legacy ipsec.conf stack).
INSTALL_PACKAGES=(python3-venv charon-systemd strongswan-swanctl libstrongswan-standard-plugins
                  nftables iproute2)
# Debian's own Python: the one the target has (python3-venv), not whichever python3 is first on
# root's PATH (a pyenv under /root is unreadable to the service's user).
PYTHON=/usr/bin/python3
USER_NAME=webui
VICI_GROUP=vici
UNIT=webui.service
# What the code is: everything the service runs, and ./dev for set-password, upgrade, uninstall.
CODE=(run.py requirements.txt dev webui packaging docs/webui.service)

die() { echo "dev $action: $*" >&2; exit 1; }
say() { echo "dev $action: $*" >&2; }

action=$1
shift
root="" prefix=/opt/webui data_dir=/var/lib/webui host=127.0.0.1 port=8080 purge=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$(realpath -m "$2"); shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --host) host=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --purge) purge=1; shift ;;
    *) die "unknown option $1 (see ./dev)" ;;
  esac
done
case "$prefix$data_dir" in /*/*) ;; *) die "--prefix and --data-dir must be absolute paths" ;; esac
[ "$(id -u)" -eq 0 ] || die "run as root (it creates a system user and writes under /etc)"

# Live changes to the running system (packages, systemctl) only without --root, and only when
# systemd is the init system (a container or chroot has none to talk to).
live() { [ -z "$root" ] && [ -d /run/systemd/system ]; }

etc_default=$root/etc/default/webui
unit_path=$root/etc/systemd/system/$UNIT
polkit_rule=$root/etc/polkit-1/rules.d/50-webui.rules
strongswan_conf=$root/etc/strongswan.d/webui-vici.conf

ensure_user() {
  local opts=()
  if [ -n "$root" ]; then
    opts=(--prefix "$root")
    [ -f "$root/etc/passwd" ] || die "$root/etc/passwd is missing: --root must hold a system's /etc"
  fi
  grep -q "^$VICI_GROUP:" "$root/etc/group" || groupadd --system "${opts[@]}" "$VICI_GROUP"
  if ! grep -q "^$USER_NAME:" "$root/etc/passwd"; then
    useradd --system "${opts[@]}" --home-dir "$data_dir" --no-create-home \
      --shell /usr/sbin/nologin --user-group --groups "$VICI_GROUP" "$USER_NAME"
  elif ! id -nG "$USER_NAME" 2>/dev/null | grep -qw "$VICI_GROUP" || [ -n "$root" ]; then
    usermod "${opts[@]}" -a -G "$VICI_GROUP" "$USER_NAME"
  fi
}

# Numeric ids from the target's own /etc, so a scratch root gets its own user's ids.
uid_of() { awk -F: -v u="$1" '$1 == u { print $3 }' "$root/etc/passwd"; }
gid_of() { awk -F: -v g="$1" '$1 == g { print $3 }' "$root/etc/group"; }

# The code and its venv, built beside the installed tree, then swapped in: a failed pip install
# leaves the running version as it was. The venv is rebuilt only when the pinned requirements
# changed (pip then starts from an empty venv, so a dropped pin is really gone).
stage_code() {
  local target=$root$prefix stage=$root$prefix.new
  rm -rf "$stage"
  mkdir -p "$stage"
  tar -c --exclude=__pycache__ --exclude='*.pyc' "${CODE[@]}" | tar -x -C "$stage"
  if [ -x "$target/.venv/bin/python" ] && cmp -s "$target/.venv/.requirements" requirements.txt; then
    say "pinned requirements unchanged: keeping the venv"
    reuse_venv=1
  else
    say "building the venv (requirements.txt)"
    "$PYTHON" -m venv "$stage/.venv"
    "$stage/.venv/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir \
      -r requirements.txt
    cp requirements.txt "$stage/.venv/.requirements"
    reuse_venv=0
  fi
  # Compiled once here: the service's user cannot write __pycache__ under the prefix.
  "$stage/.venv/bin/python" -m compileall -q "$stage/webui" >/dev/null 2>&1 ||
    "$PYTHON" -m compileall -q "$stage/webui" >/dev/null
  printf 'PREFIX=%s\nDATA_DIR=%s\nUSER=%s\n' "$prefix" "$data_dir" "$USER_NAME" > "$stage/.installed"
  chown -R 0:0 "$stage"
  chmod -R u=rwX,go=rX "$stage"
}

swap_code() {
  local target=$root$prefix stage=$root$prefix.new
  if [ "$reuse_venv" = 1 ]; then
    mv "$target/.venv" "$stage/.venv"
  fi
  rm -rf "$target.old"
  [ -e "$target" ] && mv "$target" "$target.old"
  mv "$stage" "$target"
  rm -rf "$target.old"
}

make_data_dir() {
  local dir=$root$data_dir uid gid
  uid=$(uid_of "$USER_NAME") gid=$(gid_of "$USER_NAME")
  mkdir -p "$dir"
  chown "$uid:$gid" "$dir"
  chmod 0700 "$dir"
  # Files an earlier version or a root-run command left: the service must read them, nobody else.
  find "$dir" -mindepth 1 -maxdepth 1 -type f -exec chown "$uid:$gid" {} + -exec chmod 0600 {} +
}

write_unit() {
  mkdir -p "$(dirname "$unit_path")"
  # StateDirectory= names a directory under /var/lib; a data directory elsewhere is made here only.
  local state=(-e "s|^StateDirectory=webui$|StateDirectory=${data_dir#/var/lib/}|")
  case "$data_dir" in /var/lib/*) ;; *) state=(-e "/^StateDirectory/d") ;; esac
  sed -e "s|/opt/webui|$prefix|g" -e "s|/var/lib/webui|$data_dir|g" "${state[@]}" \
    docs/webui.service > "$unit_path"
  chmod 0644 "$unit_path"
}

write_settings() {
  # The operator's settings: written once, then theirs (kept by upgrade and uninstall).
  [ -e "$etc_default" ] && return 0
  mkdir -p "$(dirname "$etc_default")"
  cat > "$etc_default" <<EOF
# Settings of the router web UI (WEBUI_* variables, README "Configuration"); read by $UNIT.
# Listen on the LAN address only, never on the WAN (docs/OPERATING.md, "Ports").
WEBUI_HOST=$host
WEBUI_PORT=$port
EOF
  chmod 0644 "$etc_default"
}

write_strongswan_side() {
  mkdir -p "$(dirname "$strongswan_conf")" "$(dirname "$polkit_rule")"
  cat > "$strongswan_conf" <<EOF
# Written by the web UI's installer: charon creates its VICI socket (mode 0770) with this group,
# of which the UI's user is a member. charon-systemd reads the charon section too.
charon {
    group = $VICI_GROUP
}
EOF
  cat > "$polkit_rule" <<EOF
// Written by the web UI's installer: "Restart IPsec" may restart strongSwan, and nothing else.
polkit.addRule(function (action, subject) {
  if (subject.user === "$USER_NAME" && action.id === "org.freedesktop.systemd1.manage-units" &&
      action.lookup("unit") === "strongswan.service" && action.lookup("verb") === "restart") {
    return polkit.Result.YES;
  }
});
EOF
  chmod 0644 "$strongswan_conf" "$polkit_rule"
}

install_packages() {
  if ! live; then
    say "not installing packages here; the target needs: ${INSTALL_PACKAGES[*]}"
    return 0
  fi
  local missing=()
  for pkg in "${INSTALL_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

do_install() {
  [ -f "$root$prefix/.installed" ] && [ "$action" = install ] &&
    die "already installed in $root$prefix: use ./dev upgrade"
  [ "$action" = upgrade ] && [ ! -f "$root$prefix/.installed" ] &&
    die "nothing installed in $root$prefix: use ./dev install"
  install_packages
  ensure_user
  stage_code
  local was_active=0
  if live && systemctl is-active --quiet "$UNIT"; then
    was_active=1
    systemctl stop "$UNIT"
  fi
  swap_code
  make_data_dir
  write_unit
  write_settings
  write_strongswan_side
  if live; then
    systemctl daemon-reload
    if [ "$was_active" = 1 ]; then
      # The UI reloads its peers at start; charon keeps the SAs of connections that did not change.
      systemctl start "$UNIT"
      say "restarted $UNIT"
    fi
  fi
  say "done: code in $root$prefix, data in $root$data_dir, unit $unit_path"
  if [ "$action" = install ]; then
    say "next: $prefix/dev set-password, then systemctl restart strongswan (for the vici group)" \
        "and systemctl enable --now webui"
  fi
}

do_uninstall() {
  if live; then
    systemctl disable --now "$UNIT" 2>/dev/null || true
  fi
  rm -f "$unit_path" "$polkit_rule" "$strongswan_conf"
  rm -rf "$root$prefix" "$root$prefix.new" "$root$prefix.old"
  if live; then
    systemctl daemon-reload
    # The UI's firewall table outlives it: nothing else would ever remove it.
    nft delete table inet webui_ipsec 2>/dev/null || true
  fi
  if [ "$purge" = 1 ]; then
    rm -rf "${root:?}$data_dir" "$etc_default"
    local opts=()
    [ -n "$root" ] && opts=(--prefix "$root")
    grep -q "^$USER_NAME:" "$root/etc/passwd" && userdel "${opts[@]}" "$USER_NAME"
    say "removed the data directory ($data_dir: peers and keys), $etc_default and user $USER_NAME"
  else
    say "kept the data directory $data_dir (peers and keys), $etc_default and user $USER_NAME" \
        "(--purge removes them)"
  fi
  say "the UI's connections stay loaded in charon until strongSwan restarts" \
      "(systemctl restart strongswan)"
}

case "$action" in
  install|upgrade) do_install ;;
  uninstall) do_uninstall ;;
  *) die "unknown action" ;;
esac
