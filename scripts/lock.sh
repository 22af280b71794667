#!/usr/bin/env bash
# Refreshes requirements.lock: every package the service and its test suite install, pinned to
# one version with the hashes of every file PyPI serves for it, for any platform and Python 3.11+
# (a "universal" resolution with markers). Run it after changing a range in pyproject.toml, or
# when scripts/check_newest.sh shows newer releases pass the suite (README "Dependencies").
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9 # the resolver is pinned too, so two refreshes of one day agree
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/pip" install -q "uv==$UV_VERSION"
# setuptools builds the editable install with --no-build-isolation, so it is locked too.
echo "setuptools>=69" > "$tools/build.in"
"$tools/venv/bin/uv" pip compile --quiet --no-config --universal --python-version 3.11 \
  --generate-hashes --extra test --default-index https://pypi.org/simple \
  --custom-compile-command "bash scripts/lock.sh" \
  pyproject.toml "$tools/build.in" -o requirements.lock
sed -i "s|$tools/build.in|scripts/lock.sh (build)|" requirements.lock
echo "requirements.lock refreshed: $(grep -c '^[a-z]' requirements.lock) packages"
