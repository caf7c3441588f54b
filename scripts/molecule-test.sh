#!/usr/bin/env bash
# Run one Molecule scenario on one Debian release, with a fresh loop device as the data disk:
#   scripts/molecule-test.sh SCENARIO 12|13 [molecule action, default: test]
# The loop device is a real block device from this machine, passed into the container under its
# own name (libblkid resolves UUID= by scanning /proc/partitions, which lists it by that name).
# It is detached afterwards, whether the scenario passed or not. Molecule's working directory
# (inventory, test secrets) is .cache/molecule/SCENARIO-dRELEASE.
set -euo pipefail

scenario="${1:?usage: $0 SCENARIO 12|13 [action]}"
release="${2:?usage: $0 SCENARIO 12|13 [action]}"
action="${3:-test}"
root="$(cd "$(dirname "$0")/.." && pwd)"
state="$root/.cache/molecule-disks"
mkdir -p "$state"
image="$state/${scenario}-d${release}.img"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

log() { printf '==> [%s on Debian %s] %s\n' "$scenario" "$release" "$*"; }

cleanup() {
  if [ -n "${device:-}" ] && [ "$action" != converge ]; then
    $SUDO losetup -d "$device" 2>/dev/null || true
    rm -f "$image"
  fi
}
trap cleanup EXIT

# Reuse the device of an earlier converge of the same scenario, if it is still attached.
device="$($SUDO losetup -j "$image" -O NAME -n 2>/dev/null | head -n 1 || true)"
if [ -z "$device" ]; then
  rm -f "$image"
  truncate -s 1G "$image"
  device="$($SUDO losetup -f --show "$image")"
fi
log "data disk: $device (1 GiB, backed by $image)"

export HUB_DEBIAN_RELEASE="$release"
# Molecule frames and wraps its output, and pytest shortens its failure lines, to the terminal's
# width, 80 columns in CI: wide enough here that a failed test's line keeps its message.
export COLUMNS=200
export HUB_TEST_DATA_DEVICE="$device"
# One working directory per scenario and release (inventory, generated secrets), so the two
# releases of a scenario can run at the same time (make molecule runs them side by side).
export MOLECULE_EPHEMERAL_DIRECTORY="$root/.cache/molecule/${scenario}-d${release}"
cd "$root"
molecule "$action" -s "$scenario"
