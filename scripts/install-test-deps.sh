#!/usr/bin/env bash
# Installs the Debian packages the Mailhouse test suite talks to, idempotently, and gets the system's
# own daemons out of the tests' way only where they really are in it.
#
# Postfix is installed with debconf's "No configuration", and policy-rc.d keeps apt from starting any
# daemon while installing. The tests start private Postfix, Dovecot, PostgreSQL, dnsmasq and unbound instances
# (tests/peers/) from their own temp directories on free loopback ports, so a developer's own running
# postfix/dovecot/postgresql/dnsmasq is left alone. The one fixed resource the tests need is TCP port
# 25 on 127.0.0.2-127.0.0.9 (tests/queue/test_outbound_e2e.py: the MX hosts of its lab). If one of
# those four system services holds it (say a Postfix with inet_interfaces = all), that service is
# stopped, with a line saying so; anything else holding it is reported and left running.
set -euo pipefail
PKGS=(swaks libnet-ssleay-perl libio-socket-ssl-perl dnsmasq-base postfix dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-fts-xapian postgresql fetchmail getmail6 isync offlineimap3 msmtp mutt chromium sqlite3 procps systemd unbound ldnsutils rspamd pebble dovecot-sieve sieve-connect)
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # policy-rc.d keeps apt from starting the system daemons while installing.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null; $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  $SUDO rm -f /usr/sbin/policy-rc.d
  trap - EXIT
fi

LAB_PORT=25
LAB_ADDRS="127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5 127.0.0.6 127.0.0.7 127.0.0.8 127.0.0.9"

# Prints "ADDR ..." (the lab addresses where port 25 cannot be bound because something listens)
# on line 1 and the PIDs of the processes holding a listening socket on port 25 on line 2.
port_holders() {
  python3 - "$LAB_PORT" $LAB_ADDRS <<'EOF'
import errno, os, socket, sys
port, addrs = int(sys.argv[1]), sys.argv[2:]
busy = []
for addr in addrs:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the tests' servers do
        try:
            s.bind((addr, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                busy.append(addr)
inodes = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        rows = open(table).read().splitlines()[1:]
    except OSError:
        continue
    for row in rows:
        f = row.split()
        if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
            inodes.add(f[9])
pids = []
for pid in filter(str.isdigit, os.listdir("/proc")) if busy else ():
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        continue
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            pids.append(pid)
            break
print(" ".join(busy))
print(" ".join(pids))
EOF
}

# The main PID of a running system service, from its pid file ("" if not running).
service_pid() {
  local f=""
  case "$1" in
    postfix) f="$(postconf -h queue_directory 2>/dev/null || echo /var/spool/postfix)/pid/master.pid" ;;
    dovecot) f="$(doveconf -h base_dir 2>/dev/null || echo /run/dovecot)/master.pid" ;;
    postgresql) f="$(ls /run/postgresql/*.pid 2>/dev/null | head -n1 || true)" ;;
    dnsmasq) f=/run/dnsmasq/dnsmasq.pid ;;
  esac
  local pid=""
  [ -n "$f" ] && [ -r "$f" ] && pid="$(head -n1 "$f" | tr -dc 0-9)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

# True if PID is ANCESTOR or one of its descendants (Postfix's smtpd children share master's socket).
descends_from() {
  local pid="$1" ancestor="$2"
  while [ -n "$pid" ] && [ "$pid" -gt 1 ]; do
    [ "$pid" = "$ancestor" ] && return 0
    pid="$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null || true)"
  done
  return 1
}

mapfile -t lines < <(port_holders)
busy="${lines[0]:-}"; holders="${lines[1]:-}"
if [ -n "$busy" ]; then
  for svc in postfix dovecot postgresql dnsmasq; do
    main="$(service_pid "$svc")"
    [ -n "$main" ] || continue
    for pid in $holders; do
      if descends_from "$pid" "$main"; then
        echo "install-test-deps: stopping the system's $svc (pid $main): it listens on port $LAB_PORT of" \
             "$busy, which tests/queue/test_outbound_e2e.py needs; start it again with: service $svc start"
        $SUDO service "$svc" stop >/dev/null 2>&1 || echo "install-test-deps: could not stop $svc" >&2
        break
      fi
    done
  done
  mapfile -t lines < <(port_holders)
  if [ -n "${lines[0]:-}" ]; then
    for pid in ${lines[1]:-}; do
      echo "install-test-deps: port $LAB_PORT on ${lines[0]} is still held by pid $pid" \
           "($(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-80)), which is not one of the" \
           "system services this script manages, so it is left running. If it is another test run, the" \
           "outbound end-to-end tests wait for its lock; otherwise they fail until it stops." >&2
    done
  fi
fi
exit 0
