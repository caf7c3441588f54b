#!/usr/bin/env bash
# Build the systemd-capable Debian base image that Molecule and the lab boot, one per release:
#   scripts/build-base-image.sh 12|13
# An image that already exists is reused. Where a registry answers, the official image is pulled
# and systemd added on top; where none answers (the usual case on the CI machines), the root
# file system is made with debootstrap from Debian's mirror and imported.
set -euo pipefail

release="${1:?usage: $0 12|13}"
case "$release" in
  12) suite=bookworm ;;
  13) suite=trixie ;;
  *) echo "ERROR: Debian release '$release' is not supported; use 12 or 13" >&2; exit 2 ;;
esac
image="${HUB_IMAGE_PREFIX:-hub-systemd}:debian${release}"
mirror="${HUB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages="systemd,systemd-sysv,python3,sudo,ca-certificates,iproute2"

log() { printf '==> [%s] %s\n' "$image" "$*"; }

if docker image inspect "$image" >/dev/null 2>&1; then
  log "base image exists, reusing it"
  exit 0
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

if timeout 60 docker pull -q "debian:${suite}" >/dev/null 2>&1; then
  log "pulled debian:${suite}; adding systemd"
  cat >"$workdir/Dockerfile" <<DOCKERFILE
FROM debian:${suite}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${packages//,/ } \\
 && rm -rf /var/lib/apt/lists/*
CMD ["/lib/systemd/systemd"]
DOCKERFILE
  docker build -t "$image" "$workdir"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ERROR: no registry answers and debootstrap is missing: sudo apt-get install debootstrap" >&2
    exit 1
  fi
  log "installing debootstrap from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
fi

log "no registry answers; debootstrapping ${suite} from ${mirror} (about a minute)"
rootfs="$workdir/rootfs"
# Progress: debootstrap prints one line per step (Retrieving, Validating, Unpacking, Configuring).
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" \
  | grep --line-buffered -E '^I: (Retrieving Release|Resolving|Checking|Installing core|Unpacking the base|Configuring the base|Base system installed)' || true
test -x "$rootfs/lib/systemd/systemd" || { echo "ERROR: debootstrap of ${suite} failed" >&2; exit 1; }
# A fresh host has an empty machine-id that systemd fills at first boot.
: >"$rootfs/etc/machine-id"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
log "importing the root file system"
tar -C "$rootfs" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' - "$image" >/dev/null
log "built"
