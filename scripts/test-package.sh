#!/usr/bin/env bash
# Tests the Debian package on this machine, as root: builds it (scripts/package-deb.sh), installs
# it with dpkg, checks what it installed (binary, conffile, unit, the `ferrogate` user and its
# 0700 state directory), runs `ferrogate check` on the installed configuration, verifies the unit
# with systemd-analyze when it exists, then starts the daemon the way the unit does (there is no
# systemd as PID 1 here): as the `ferrogate` user with only CAP_NET_BIND_SERVICE, no new
# privileges, from /var/lib/ferrogate. It waits for the admin /healthz, checks the process's user,
# its listeners on 80/443, the state it wrote, a reload by SIGHUP (`systemctl reload`), a
# reinstall over the running daemon, a clean SIGTERM stop, then `dpkg --remove` (state and user
# stay) and `dpkg --purge` (both go), leaving the machine as it was.
#
# The installed configuration listens on 80, 443 and 127.0.0.1:9901. When one of them is taken on
# this machine the daemon runs from a copy of the installed file that differs only in those
# ports (printed as it happens); the installed file itself is never changed.
#
# Exits non-zero with "SKIPPED" when dpkg is missing (not a Debian system).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "test-package: $*"; }
fail() { echo "test-package: FAILED: $*" >&2; exit 1; }

if ! command -v dpkg >/dev/null 2>&1; then
  echo "test-package: SKIPPED: dpkg is missing (not a Debian system); the package was not tested" >&2
  exit 2
fi
[ "$(id -u)" = 0 ] || fail "must run as root (it installs and purges the package)"
for cmd in setpriv curl ss; do
  command -v "$cmd" >/dev/null 2>&1 || fail "$cmd is missing"
done

# Never touch an installation that is not ours.
if dpkg-query -W -f='${Status}' ferrogate 2>/dev/null | grep -q ' installed$'; then
  fail "ferrogate is installed on this machine already; not touching it"
fi
getent passwd ferrogate >/dev/null && fail "a ferrogate user exists already; not touching it"
[ -e /var/lib/ferrogate ] && fail "/var/lib/ferrogate exists already; not touching it"
[ -e /etc/ferrogate ] && fail "/etc/ferrogate exists already; not touching it"

deb=$(scripts/package-deb.sh)
say "package $deb ($(du -h "$deb" | cut -f1))"
if command -v lintian >/dev/null 2>&1; then
  say "lintian (errors and warnings fail; packaging/debian/ferrogate.lintian-overrides says why two are overridden)"
  lint_status=0
  lint=$(lintian --fail-on error,warning "$deb" 2>&1) || lint_status=$?
  grep -v 'running with root privileges' <<<"$lint" || true
  [ "$lint_status" = 0 ] || fail "lintian found errors or warnings"
else
  say "lintian missing: package not linted"
fi

work=$(mktemp -d /tmp/ferrogate-package-test.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  dpkg --purge ferrogate >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

dpkg -i "$deb"

say "installed files, user and state directory"
[ -x /usr/bin/ferrogate ] || fail "/usr/bin/ferrogate missing"
[ -f /usr/lib/systemd/system/ferrogate.service ] || fail "unit missing"
dpkg-query -W -f='${Conffiles}\n' ferrogate | grep -q '^ /etc/ferrogate/ferrogate.yaml ' \
  || fail "/etc/ferrogate/ferrogate.yaml is not a conffile"
getent passwd ferrogate >/dev/null || fail "no ferrogate user"
getent group ferrogate >/dev/null || fail "no ferrogate group"
[ "$(id -gn ferrogate)" = ferrogate ] || fail "ferrogate's primary group is $(id -gn ferrogate)"
state_mode() { stat -c '%U:%G %a' /var/lib/ferrogate; }
[ "$(state_mode)" = "ferrogate:ferrogate 700" ] || fail "/var/lib/ferrogate is $(state_mode)"
/usr/bin/ferrogate version

say "ferrogate check on the installed configuration"
/usr/bin/ferrogate check --config /etc/ferrogate/ferrogate.yaml

if command -v systemd-analyze >/dev/null 2>&1; then
  say "systemd-analyze verify of the installed unit"
  analysis=$(systemd-analyze verify /usr/lib/systemd/system/ferrogate.service 2>&1) \
    || fail "systemd-analyze verify: $analysis"
  if grep -q 'ferrogate.service' <<<"$analysis"; then
    fail "systemd-analyze complains: $analysis"
  fi
else
  say "systemd-analyze missing: unit not verified"
fi

# Ports of the installed configuration; a copy with other ports only when one is taken here.
config=/etc/ferrogate/ferrogate.yaml
http_port=80 https_port=443 admin=127.0.0.1:9901
port_taken() { ss -Htln "sport = :$1" | grep -q .; }
free_port() {
  local port
  while port=$((20000 + RANDOM % 40000)); port_taken "$port"; do :; done
  echo "$port"
}
if port_taken 80 || port_taken 443 || port_taken 9901; then
  http_port=$(free_port) https_port=$(free_port) admin=127.0.0.1:$(free_port)
  say "port 80, 443 or 9901 is taken on this machine: running from a copy of the installed" \
      "configuration with ports $http_port, $https_port and $admin instead"
  config=$work/ferrogate.yaml
  sed -e "s/^\(  http: 0.0.0.0:\)80 /\1$http_port /" \
      -e "s/^\(  https: 0.0.0.0:\)443$/\1$https_port/" \
      -e "s/127.0.0.1:9901/$admin/" /etc/ferrogate/ferrogate.yaml >"$config"
  chmod 0755 "$work" && chmod 0644 "$config"
  diff /etc/ferrogate/ferrogate.yaml "$config" || true
fi

say "starting the daemon as the unit does: user ferrogate, CAP_NET_BIND_SERVICE only, from /var/lib/ferrogate"
cd /var/lib/ferrogate
setpriv --reuid ferrogate --regid ferrogate --init-groups --no-new-privs \
  --bounding-set -all,+net_bind_service --inh-caps -all,+net_bind_service \
  --ambient-caps -all,+net_bind_service \
  /usr/bin/ferrogate run --config "$config" >"$work/daemon.log" 2>&1 &
pid=$!
cd - >/dev/null
show_log() { echo "---- daemon log ----" >&2; cat "$work/daemon.log" >&2; }

for _ in $(seq 1 150); do
  kill -0 "$pid" 2>/dev/null || { show_log; fail "the daemon exited during start-up"; }
  /usr/bin/ferrogate health --admin "$admin" >/dev/null 2>&1 && break
  sleep 0.2
done
/usr/bin/ferrogate health --admin "$admin" || { show_log; fail "no /healthz on $admin"; }
say "healthy on $admin"

user=$(ps -o user= -p "$pid" | tr -d ' ')
[ "$user" = ferrogate ] || { show_log; fail "the daemon runs as '$user'"; }
ss -Htlnp "sport = :$https_port" | grep -q "pid=$pid," || fail "nothing of $pid listens on $https_port"
ss -Htlnp "sport = :$http_port" | grep -q "pid=$pid," || fail "nothing of $pid listens on $http_port"
say "pid $pid runs as ferrogate and listens on $http_port and $https_port"

# The installed configuration: plain HTTP redirects to https, the TLS listener answers with the
# self-signed placeholder (502: nothing listens on 127.0.0.1:8080 unless this machine has it).
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http_port/")
[ "$code" = 308 ] || { show_log; fail "http answered $code, not a redirect"; }
code=$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$https_port/")
case "$code" in 2??|3??|4??|5??) ;; *) show_log; fail "https answered '$code'" ;; esac
say "http → 308, https → $code"

[ "$(state_mode)" = "ferrogate:ferrogate 700" ] || fail "/var/lib/ferrogate became $(state_mode)"
state_files=$(find /var/lib/ferrogate -mindepth 1 -type f)
[ -n "$state_files" ] || fail "the daemon wrote nothing into /var/lib/ferrogate"
[ -n "$(find /var/lib/ferrogate/selfsigned -type f 2>/dev/null)" ] \
  || fail "no self-signed placeholder in /var/lib/ferrogate/selfsigned: $state_files"
foreign=$(find /var/lib/ferrogate ! -user ferrogate)
[ -z "$foreign" ] || fail "state not owned by ferrogate: $foreign"
say "state written by the daemon:"
find /var/lib/ferrogate -mindepth 1 -printf '  %M %u:%g %p\n'

metric() { curl -s "http://$admin/metrics" | sed -n "s/^$1 //p"; }
[ "$(metric ferrogate_config_generation)" = 1 ] || fail "generation is not 1 at start"
kill -HUP "$pid"   # what ExecReload (systemctl reload) sends
for _ in $(seq 1 50); do
  [ "$(metric ferrogate_config_generation)" = 2 ] && break
  sleep 0.2
done
[ "$(metric ferrogate_config_generation)" = 2 ] || { show_log; fail "SIGHUP did not reload"; }
say "SIGHUP reloaded the configuration (generation 2)"

say "reinstalling over the running daemon"
sum_before=$(md5sum /etc/ferrogate/ferrogate.yaml)
dpkg -i "$deb"
[ "$(md5sum /etc/ferrogate/ferrogate.yaml)" = "$sum_before" ] || fail "the reinstall changed the conffile"
[ "$(state_mode)" = "ferrogate:ferrogate 700" ] || fail "/var/lib/ferrogate became $(state_mode)"
/usr/bin/ferrogate health --admin "$admin" || { show_log; fail "unhealthy after the reinstall"; }

say "stopping with SIGTERM (systemctl stop)"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=""
[ "$status" = 0 ] || { show_log; fail "the daemon exited with $status on SIGTERM"; }

say "dpkg --remove keeps the configuration, the state and the user"
dpkg --remove ferrogate
[ ! -e /usr/bin/ferrogate ] || fail "/usr/bin/ferrogate left after remove"
[ -f /etc/ferrogate/ferrogate.yaml ] || fail "remove deleted the conffile"
[ -d /var/lib/ferrogate/selfsigned ] || fail "remove deleted the state"
getent passwd ferrogate >/dev/null || fail "remove deleted the user"

say "dpkg --purge removes them"
dpkg --purge ferrogate
[ ! -e /etc/ferrogate ] || fail "/etc/ferrogate left after purge: $(ls -A /etc/ferrogate)"
[ ! -e /var/lib/ferrogate ] || fail "/var/lib/ferrogate left after purge"
! getent passwd ferrogate >/dev/null || fail "user ferrogate left after purge"
! getent group ferrogate >/dev/null || fail "group ferrogate left after purge"
say "ok"
