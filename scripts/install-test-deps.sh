#!/usr/bin/env bash
# Installs the Debian packages the Mailhouse test suite talks to, idempotently.
# Postfix is installed with debconf's "No configuration" so nothing takes port 25;
# the system's Postfix and Dovecot services are stopped: tests run their own instances.
set -euo pipefail
PKGS=(swaks libnet-ssleay-perl libio-socket-ssl-perl dnsmasq-base postfix dovecot-imapd dovecot-pop3d postgresql fetchmail getmail6 isync offlineimap3 msmtp mutt chromium sqlite3 procps)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # policy-rc.d keeps apt from starting the system daemons while installing.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null; $SUDO chmod +x /usr/sbin/policy-rc.d
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  $SUDO rm -f /usr/sbin/policy-rc.d
fi
# Never leave the system's own daemons running: tests start private instances.
for svc in postfix dovecot postgresql dnsmasq; do
  (service "$svc" stop >/dev/null 2>&1 || true)
done
