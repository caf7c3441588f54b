#!/usr/bin/env bash
# The local lab: systemd containers that stand in for the inventory's hosts.
#   scripts/lab.sh up | down | shell | psql | summary | drill
# `up` starts what is missing (reusing what exists), attaches a loop device as hub_db's data
# disk, runs site.yml against inventories/lab and prints what was provisioned.
# `drill` (after `up`) starts a fresh dr_target container, hub-lab-drill, with a loop device of
# its own, runs playbooks/dr-drill.yml (restore from repo2, verify, report) and prints the report.
# Arguments after `drill` go to ansible-playbook: scripts/lab.sh drill -e dr_drill_target_name=X
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
lab="$root/.lab"
disk="$lab/hub-db-data.img"
db=hub-lab-db
# The DR drill host (dr_target): recreated by every `drill`, with its own data disk.
drill=hub-lab-drill
drill_disk="$lab/hub-drill-data.img"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

# name:debian-release for each lab host. pgBackRest needs the same version on the hub and the
# off-site host, so both run the same Debian release.
hosts=("$db:13" "hub-lab-offsite:13")
# A user-defined network: its DNS lets the hosts reach each other by name (pgBackRest's TLS).
network=hub-lab-net

log() { printf '==> %s\n' "$*"; }

systemd_flags=(
  --cap-add SYS_ADMIN --cap-add NET_ADMIN
  --security-opt seccomp=unconfined
  --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw
  --tmpfs /run --tmpfs /run/lock
)

data_device() {
  [ -f "$disk" ] && $SUDO losetup -j "$disk" -O NAME -n 2>/dev/null | head -n 1 || true
}

drill_device() {
  [ -f "$drill_disk" ] && $SUDO losetup -j "$drill_disk" -O NAME -n 2>/dev/null | head -n 1 || true
}

remove_drill() {
  local device
  if docker inspect "$drill" >/dev/null 2>&1; then docker rm -f "$drill" >/dev/null && log "removed $drill"; fi
  device="$(drill_device)"
  if [ -n "$device" ]; then $SUDO losetup -d "$device" && log "detached $device"; fi
  rm -f "$drill_disk"
}

attach_disk() {
  local device
  device="$(data_device)"
  if [ -z "$device" ]; then
    mkdir -p "$lab"
    [ -f "$disk" ] || truncate -s 16G "$disk"  # sparse: takes only what is written
    device="$($SUDO losetup -f --show "$disk" 2>/dev/null || true)"
  fi
  echo "$device"
}

start_host() {
  local name="$1" release="$2" device="$3"
  local state image networks
  state="$(docker inspect -f '{{.State.Status}}' "$name" 2>/dev/null || true)"
  image="$(docker inspect -f '{{.Config.Image}}' "$name" 2>/dev/null || true)"
  if [ -n "$state" ] && [ "$image" != "hub-systemd:debian$release" ]; then
    # An older lab's host on another release (the off-site host was once Debian 12). The hub's
    # data lives on its data disk; an off-site host's repository is refilled by its backups.
    log "$name runs $image, not hub-systemd:debian$release: recreating it"
    docker rm -f "$name" >/dev/null
    state=""
  fi
  if [ -n "$state" ]; then
    # A lab from before the named network: move the host onto it, and off Docker's default
    # bridge, so its one address (which PostgreSQL listens on) is the one the other host reaches.
    networks="$(docker inspect -f '{{json .NetworkSettings.Networks}}' "$name")"
    if ! grep -q "\"$network\"" <<< "$networks"; then
      log "$name is not on $network: moving it there"
      docker network connect "$network" "$name"
    fi
    if grep -q '"bridge"' <<< "$networks"; then
      docker network disconnect bridge "$name"
    fi
  fi
  if [ "$state" = running ]; then
    log "$name is running (Debian $release), reusing it"
    return
  fi
  if [ -n "$state" ]; then
    log "$name exists but is $state: starting it"
    docker start "$name" >/dev/null && return
    log "$name does not start (its data disk may be gone): recreating it"
    docker rm -f "$name" >/dev/null
  fi
  local extra=()
  [ -n "$device" ] && extra+=(--device "$device:$device")
  log "starting $name from hub-systemd:debian$release"
  docker run -d --name "$name" --hostname "$name" --network "$network" "${systemd_flags[@]}" "${extra[@]}" \
    "hub-systemd:debian$release" /lib/systemd/systemd >/dev/null
  for _ in $(seq 1 30); do
    docker exec "$name" systemctl is-system-running 2>/dev/null | grep -qE 'running|degraded' && return
    sleep 1
  done
}

q() { docker exec "$db" sudo -u postgres psql -XAtq -d hub -c "$1"; }

summary() {
  local version data_dir
  version="$(q 'SHOW server_version')"
  data_dir="$(q 'SHOW data_directory')"
  cat <<SUMMARY

Provisioned lab (inventories/lab):
  hub_db          $db (Debian $(docker exec "$db" cat /etc/debian_version))
  backup_offsite  hub-lab-offsite (Debian $(docker exec hub-lab-offsite cat /etc/debian_version))

PostgreSQL $version
  data directory  $data_dir
  on volume       $(docker exec "$db" findmnt -no SOURCE,FSTYPE,OPTIONS -T "$data_dir" | tr -s ' ')
  checksums       $(q 'SHOW data_checksums')
  compression     toast=$(q 'SHOW default_toast_compression') wal=$(q 'SHOW wal_compression')
  memory          shared_buffers=$(q 'SHOW shared_buffers') effective_cache_size=$(q 'SHOW effective_cache_size') work_mem=$(q 'SHOW work_mem')
  listens on      $(q 'SHOW listen_addresses'):$(q 'SHOW port') (TLS $(q 'SHOW ssl'), $(q 'SHOW password_encryption'))
  roles           $(q "SELECT string_agg(rolname, ', ' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'hub\\_%'")
  time zone       $(docker exec "$db" date +'%Z (%z)')

Schedule (/etc/cron.d on $db):
$(docker exec "$db" sh -c 'grep -hv "^#" /etc/cron.d/hub* 2>/dev/null | grep . | sed "s/^/  /"' || true)$(docker exec "$db" sh -c 'ls /etc/cron.d/hub* >/dev/null 2>&1' || echo "  (no scheduled jobs installed yet)")

Backups (hubctl backup-status on $db):
$(docker exec "$db" sudo -u hubmaint /usr/local/bin/hubctl backup-status 2>&1 | sed "s/^/  /" || true)

Reach it:
  make lab-shell   a shell on $db
  make lab-psql    psql on the hub database as postgres
  passwords of the hub's roles: .lab/secrets/ (generated, git-ignored)
  make lab-down    remove the lab
SUMMARY
}

case "${1:-}" in
  up)
    start=$(date +%s)
    device="$(attach_disk)"
    if [ -n "$device" ]; then
      log "hub_db's data disk: $device (backed by $disk)"
    else
      log "no loop device could be attached: hub_db keeps its data in a directory"
    fi
    docker network inspect "$network" >/dev/null 2>&1 || docker network create "$network" >/dev/null
    for entry in "${hosts[@]}"; do
      start_host "${entry%%:*}" "${entry##*:}" "$([ "${entry%%:*}" = "$db" ] && echo "$device")"
    done
    log "running site.yml against inventories/lab"
    cd "$root"
    HUB_LAB_DATA_DEVICE="$device" ansible-playbook site.yml -i inventories/lab
    summary
    log "make lab took $(( $(date +%s) - start )) s"
    ;;
  down)
    remove_drill
    for entry in "${hosts[@]}"; do
      docker rm -f "${entry%%:*}" >/dev/null 2>&1 && log "removed ${entry%%:*}" || true
    done
    device="$(data_device)"
    docker network rm "$network" >/dev/null 2>&1 && log "removed network $network" || true
    [ -n "$device" ] && $SUDO losetup -d "$device" && log "detached $device"
    rm -f "$disk"
    ;;
  drill)
    docker inspect -f '{{.State.Running}}' "$db" 2>/dev/null | grep -q true \
      && docker inspect -f '{{.State.Running}}' hub-lab-offsite 2>/dev/null | grep -q true \
      || { echo "the lab is not up: run 'make lab' first (the drill restores its off-site backups)" >&2; exit 1; }
    # A brand-new host every time: the drill measures the RTO from nothing.
    remove_drill
    mkdir -p "$lab"
    truncate -s 16G "$drill_disk"
    device="$($SUDO losetup -f --show "$drill_disk" 2>/dev/null || true)"
    if [ -n "$device" ]; then
      log "$drill's data disk: $device (backed by $drill_disk)"
    else
      log "no loop device could be attached: $drill keeps its data in a directory"
    fi
    # The hub's Debian release: pgBackRest must be the same version on both ends.
    start_host "$drill" "${hosts[0]##*:}" "$device"
    log "running playbooks/dr-drill.yml against inventories/lab"
    cd "$root"
    touch "$lab/drill-started"
    rc=0
    HUB_LAB_DRILL_DATA_DEVICE="$device" ansible-playbook playbooks/dr-drill.yml -i inventories/lab "${@:2}" || rc=$?
    # Only this drill's report (a drill stopped before its report leaves none).
    report="$(find reports/dr -name "dr-drill-*-$drill.md" -newer "$lab/drill-started" 2>/dev/null | sort | tail -n 1)"
    if [ -n "$report" ]; then
      printf '\n'; cat "$report"; printf '\n'
      log "report: $report (and ${report%.md}.json)"
    fi
    exit "$rc"
    ;;
  shell) exec docker exec -it "$db" bash -l ;;
  psql) exec docker exec -it "$db" sudo -u postgres psql -d hub ;;
  summary) summary ;;
  *) echo "usage: $0 up|down|shell|psql|summary|drill" >&2; exit 2 ;;
esac
