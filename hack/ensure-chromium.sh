#!/usr/bin/env bash
# Makes sure a Chromium exists for the browser conformance suite
# (test/conformance/browser_test.go drives it with puppeteer-core, which
# downloads no browser). Installs Debian's package when it is missing and
# prints the browser's path.
set -euo pipefail
find_chromium() {
  for c in "${CHROMIUM:-}" chromium chromium-browser google-chrome; do
    [[ -n "$c" ]] || continue
    if p=$(command -v "$c" 2>/dev/null); then echo "$p"; return 0; fi
  done
  return 1
}
if p=$(find_chromium); then echo "$p"; exit 0; fi
echo "ensure-chromium: installing chromium with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
${SUDO} apt-get update -qq >&2
${SUDO} apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
find_chromium
