#!/usr/bin/env bash
# Run one Molecule scenario on one Debian release, with fresh loop devices as its disks (data,
# and a second one the host scenario makes repo1's volume):
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
repo1_image="$state/${scenario}-d${release}-repo1.img"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

log() { printf '==> [%s on Debian %s] %s\n' "$scenario" "$release" "$*"; }

cleanup() {
  if [ "$action" != converge ]; then
    if [ -n "${device:-}" ]; then
      $SUDO losetup -d "$device" 2>/dev/null || true
      rm -f "$image"
    fi
    if [ -n "${repo1_device:-}" ]; then
      $SUDO losetup -d "$repo1_device" 2>/dev/null || true
      rm -f "$repo1_image"
    fi
  fi
}
trap cleanup EXIT

# A loop device backed by a sparse file of the given size; the one of an earlier converge of the
# same scenario is reused while it is still attached.
attach() {
  local file="$1" size="$2" dev
  dev="$($SUDO losetup -j "$file" -O NAME -n 2>/dev/null | head -n 1 || true)"
  if [ -z "$dev" ]; then
    rm -f "$file"
    truncate -s "$size" "$file"
    dev="$($SUDO losetup -f --show "$file")"
  fi
  printf '%s' "$dev"
}
device="$(attach "$image" 1G)"
log "data disk: $device (1 GiB, backed by $image)"
repo1_device="$(attach "$repo1_image" 256M)"
log "repo1 disk: $repo1_device (256 MiB, backed by $repo1_image)"

export HUB_DEBIAN_RELEASE="$release"
# Molecule frames and wraps its output, and pytest shortens its failure lines, to the terminal's
# width, 80 columns in CI: wide enough here that a failed test's line keeps its message.
export COLUMNS=200
export HUB_TEST_DATA_DEVICE="$device"
export HUB_TEST_REPO1_DEVICE="$repo1_device"
# One working directory per scenario and release (inventory, generated secrets), so the two
# releases of a scenario can run at the same time (make molecule runs them side by side).
export MOLECULE_EPHEMERAL_DIRECTORY="$root/.cache/molecule/${scenario}-d${release}"
cd "$root"
molecule "$action" -s "$scenario"
