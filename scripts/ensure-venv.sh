#!/usr/bin/env bash
# Create the project's virtualenv from pyproject.toml: scripts/ensure-venv.sh DIR
# Debian's python3 has no venv module until python3-venv is installed; install it when root.
set -euo pipefail
venv="${1:-.venv}"

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> Installing python3-venv from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "ERROR: python3 cannot create virtualenvs; install python3-venv (sudo apt-get install python3-venv)" >&2
    exit 1
  fi
fi

echo "==> Creating the virtualenv in $venv"
python3 -m venv "$venv"
echo "==> Installing the tool chain from pyproject.toml (ansible, molecule, testinfra, linters)"
"$venv/bin/pip" install --quiet --disable-pip-version-check --progress-bar off -e '.[test]'
# The whole output first: `| head -n 1` closes the pipe early, and under pipefail ansible's
# broken-pipe error then failed the install at random (a clean-clone CI run, 2026-11-27).
version="$("$venv/bin/ansible" --version)"
echo "${version%%$'\n'*}"
