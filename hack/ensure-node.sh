#!/usr/bin/env bash
# Makes sure node and npm exist (the conformance tests run the CometD and Faye
# JavaScript clients). Installs Debian's packages when they are missing.
set -euo pipefail
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  exit 0
fi
echo "ensure-node: installing nodejs and npm with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
${SUDO} apt-get update -qq
${SUDO} apt-get install -y -qq nodejs npm >/dev/null
node --version >&2
