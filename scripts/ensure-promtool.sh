#!/usr/bin/env bash
# Put Debian's promtool and amtool in the virtualenv's bin, for `make test-python` to check the
# monitoring role's rules and configuration: scripts/ensure-promtool.sh VENV
# They come from the prometheus and prometheus-alertmanager packages of this machine's Debian
# release, unpacked (dpkg-deb -x), not installed: no service starts on the machine.
set -euo pipefail
venv="${1:-.venv}"
bin="$venv/bin"

if [ -x "$bin/promtool" ] && [ -x "$bin/amtool" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ERROR: promtool and amtool come from Debian's prometheus packages; apt-get is missing" >&2
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "==> Unpacking promtool and amtool from Debian's prometheus packages into $bin"
# As root apt downloads unsandboxed into a directory _apt cannot read; that is expected.
if ! (cd "$work" && apt-get download -q prometheus prometheus-alertmanager >/dev/null 2>&1); then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    (cd "$work" && apt-get download -q prometheus prometheus-alertmanager >/dev/null 2>&1)
  else
    echo "ERROR: apt-get download prometheus prometheus-alertmanager failed; run 'sudo apt-get update' and try again" >&2
    exit 1
  fi
fi
for deb in "$work"/*.deb; do
  dpkg-deb -x "$deb" "$work/root"
done
install -m 0755 "$work/root/usr/bin/promtool" "$bin/promtool"
install -m 0755 "$work/root/usr/bin/amtool" "$bin/amtool"
"$bin/promtool" --version 2>&1 | head -n 1
