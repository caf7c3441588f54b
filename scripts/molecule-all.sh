#!/usr/bin/env bash
# Every Molecule scenario on every Debian release, one lane per release running side by side:
#   scripts/molecule-all.sh "SCENARIOS" "RELEASES"
# A lane runs its scenarios in order and stops at its first failure; the other lanes go on.
# Each line of output carries its lane's tag, and each lane's whole output is also kept in
# .cache/logs/molecule-dRELEASE.log. Ends with one line per scenario and release (result and
# minutes), after the lines of each failed lane's log that say what failed, and fails if any
# failed. MOLECULE_LANES=1 runs the releases one after the other.
set -uo pipefail

scenarios="${1:?usage: $0 \"SCENARIOS\" \"RELEASES\"}"
releases="${2:?usage: $0 \"SCENARIOS\" \"RELEASES\"}"
root="$(cd "$(dirname "$0")/.." && pwd)"
logs="$root/.cache/logs"
mkdir -p "$logs"
summary="$(mktemp)"
trap 'rm -f "$summary"' EXIT

lane() {
  local release="$1" scenario start rc
  for scenario in $scenarios; do
    start=$(date +%s)
    "$root/scripts/molecule-test.sh" "$scenario" "$release"
    rc=$?
    printf '%-10s Debian %-3s %-6s %3d min\n' "$scenario" "$release" \
      "$([ "$rc" -eq 0 ] && echo passed || echo FAILED)" $(( ($(date +%s) - start + 30) / 60 )) >> "$summary"
    [ "$rc" -eq 0 ] || return "$rc"
  done
}

pids=()
for release in $releases; do
  (lane "$release" 2>&1 | tee "$logs/molecule-d$release.log" | sed -u "s/^/[d$release] /") &
  pids+=($!)
  if [ "${MOLECULE_LANES:-2}" -le 1 ]; then wait "${pids[-1]}"; fi
done

failed=0
for pid in "${pids[@]}"; do
  wait "$pid" || failed=1
done
# tee and sed hide a lane's status: the summary says what passed.
grep -q FAILED "$summary" && failed=1
expected=$(( $(wc -w <<< "$scenarios") * $(wc -w <<< "$releases") ))
[ "$(wc -l < "$summary")" -eq "$expected" ] || failed=1
# CI keeps only the end of the output: say why each failed lane failed, then the summary.
for release in $releases; do
  grep -q "Debian $release *FAILED" "$summary" || continue
  echo
  echo "==> Why Debian $release failed (the whole log: .cache/logs/molecule-d$release.log)"
  "$root/scripts/lane-failures.sh" "$logs/molecule-d$release.log"
done
echo
echo "==> Molecule summary (lane logs: .cache/logs/)"
sort -k3,3 -k1,1 "$summary"
exit "$failed"
