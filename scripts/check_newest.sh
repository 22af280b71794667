#!/usr/bin/env bash
# Runs the whole suite against the newest releases pyproject.toml's ranges allow, in a throwaway
# virtualenv, so a new upstream release that breaks us is found here rather than by a user.
# Prints each package whose newest version differs from requirements.lock. When it passes and
# something moved, refresh the lock (bash scripts/lock.sh) and commit both. README "Dependencies"
# says how often to run it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q --upgrade --upgrade-strategy eager -e '.[test]'
echo "== newest allowed versions that differ from requirements.lock"
"$venv/bin/python" - <<'PY'
import re
from importlib import metadata

norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
locked: dict[str, set[str]] = {}  # a package may be locked once per Python (markers)
for name, version in re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", open("requirements.lock").read(), re.M):
    locked.setdefault(norm(name), set()).add(version)
moved = 0
for dist in sorted(metadata.distributions(), key=lambda d: norm(d.metadata["Name"])):
    name = norm(dist.metadata["Name"])
    # setuptools: the venv's own copy; the lock's pins the --no-build-isolation install
    if name in ("roomsvc", "pip", "setuptools") or name not in locked or dist.version in locked[name]:
        continue
    moved += 1
    print(f"  {name}: locked {', '.join(sorted(locked[name]))}, newest {dist.version}")
print(f"  ({moved} moved)")
PY
echo "== the suite against them"
"$venv/bin/python" -m pytest "$@"
