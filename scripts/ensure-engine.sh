#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io when dockerd is absent, start it
# when it is not running, and wait until `docker info` answers. Safe to run again: a running
# engine is left alone.
set -euo pipefail

log() { printf '==> %s\n' "$*"; }

if docker info >/dev/null 2>&1; then
  log "Docker engine already answers"
  exit 0
fi

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)

if [ "${#need_pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ERROR: ${need_pkgs[*]} missing and this is not root: install them with sudo apt-get install ${need_pkgs[*]}" >&2
    exit 1
  fi
  log "Installing ${need_pkgs[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    log "Starting docker.service"
    systemctl start docker
  else
    log "Starting dockerd in the background (no systemd here); log: /var/log/dockerd.log"
    nohup dockerd >/var/log/dockerd.log 2>&1 &
  fi
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "Docker engine answers"
    exit 0
  fi
  sleep 1
done
echo "ERROR: the Docker engine did not answer within 60 s; see /var/log/dockerd.log" >&2
exit 1
