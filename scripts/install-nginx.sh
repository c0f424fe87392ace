#!/usr/bin/env bash
# Installs nginx (Debian's nginx-light) when /usr/sbin/nginx is missing; does nothing otherwise.
# Used by scripts/cluster.sh (`make cluster`) and by the chaos suite, which runs nginx with
# config/nginx-cluster.conf in front of its nodes (tests/support/nginx.rs): a fresh CI machine
# has only what the project's scripts install.
set -euo pipefail

NGINX=/usr/sbin/nginx

die() { echo "install-nginx: error: $*" >&2; exit 1; }

[[ -x $NGINX ]] && exit 0
((EUID == 0)) || die "please install nginx (apt-get install nginx-light)"
echo "install-nginx: installing nginx-light" >&2
# The package would start a system-wide nginx on :80; we run our own, so keep it from starting
# anything (the usual policy-rc.d switch, only if none is in place).
policy=/usr/sbin/policy-rc.d
added=
status=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
fi
apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light >&2 || status=$?
[[ -z $added ]] || rm -f "$policy"
((status == 0)) || die "installing nginx-light failed"
[[ -x $NGINX ]] || die "$NGINX still missing after install"
