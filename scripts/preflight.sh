#!/usr/bin/env bash
# What `make book` and `make test` need from the system, checked before any long step.
#   scripts/preflight.sh book   needs npm (it fetches the JavaScript the offline site serves)
#   scripts/preflight.sh test   needs npm and Chromium (/usr/bin/chromium, for the browser tests)
# When something is missing and this user can install Debian packages (root with apt-get),
# they are installed; otherwise it stops at once with the one command to run.
set -euo pipefail
need=()
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ "${1:-test}" = test ] && [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    need+=(chromium)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "preflight: installing ${need[*]} with apt-get (needed by make ${1:-test})"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    exit 0
fi
echo "preflight: make ${1:-test} needs ${need[*]}, which this machine lacks." >&2
if command -v apt-get >/dev/null 2>&1; then
    echo "Install them, then run make again:  sudo apt-get install -y ${need[*]}" >&2
else
    echo "Install them with your system's package manager (on Debian/Ubuntu: sudo apt-get install -y ${need[*]}), then run make again." >&2
fi
exit 1
