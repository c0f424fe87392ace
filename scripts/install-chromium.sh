#!/usr/bin/env bash
# Installs Debian's chromium when it is missing; does nothing otherwise. Used by the cluster
# suite's dashboard test (tests/support/browser.rs), which drives a headless Chromium against a
# real three-node cluster: a fresh CI machine has only what the project's scripts install.
# Prints the browser's path on stdout.
set -euo pipefail

die() { echo "install-chromium: error: $*" >&2; exit 1; }

find_browser() { command -v chromium || command -v chromium-browser || true; }

browser=$(find_browser)
if [[ -z $browser ]]; then
  ((EUID == 0)) || die "please install chromium (apt-get install chromium)"
  echo "install-chromium: installing chromium" >&2
  apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    chromium fonts-dejavu-core >&2 || die "installing chromium failed"
  browser=$(find_browser)
  [[ -n $browser ]] || die "chromium still missing after install"
fi
echo "$browser"
