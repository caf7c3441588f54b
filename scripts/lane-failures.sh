#!/usr/bin/env bash
# What failed in one lane's log (.cache/logs/molecule-dRELEASE.log), for the end of CI's output:
#   scripts/lane-failures.sh LOG
# A lane stops at its first failure, so the failed scenario is the log's last ("==> [" starts
# each). From it: pytest's short test summary (the FAILED and ERROR lines) and each Ansible
# "fatal:" or "failed:" with the first lines of its message, except failures the play ignored.
# Molecule's frame ("  │ ") and colours are removed. At most 24 lines of 240 characters; when
# none of those is found (Molecule itself failed, say), the log's last 15 lines.
set -euo pipefail

log="${1:?usage: $0 LOG}"
plain() { sed -e 's/\x1b\[[0-9;]*m//g' "$log"; }
found="$(plain | awk '
  /^==> \[/ { n = 0 }
  { sub(/^ *│ ?/, ""); text[++n] = $0 }
  END {
    for (i = 1; i <= n; i++) {
      if (text[i] ~ /short test summary info/) { s = 1; continue }
      if (s && text[i] ~ /^=+ .*(failed|passed|error)/) s = 0
      if (s && text[i] !~ /^ *=+$/) print text[i]
      if (text[i] !~ /^(fatal|failed): \[/) continue
      # A failure the play ignored says "...ignoring" before the next task.
      for (j = i + 1; j <= n && text[j] !~ /^(TASK|PLAY|RUNNING HANDLER) \[/; j++)
        if (text[j] ~ /^\.\.\.ignoring/) break
      if (j <= n && text[j] ~ /^\.\.\.ignoring/) continue
      for (j = i; j < i + 8 && j <= n; j++) print text[j]
    }
  }' | tail -n 24 | cut -c1-240)"
if [ -n "$found" ]; then
  printf '%s\n' "$found"
else
  plain | tail -n 15 | cut -c1-240
fi
