#!/usr/bin/env bash
# ansible-test sanity on the collection, offline (LAB.md: ansible-test downloads get-pip.py
# from a host this machine cannot reach; it uses a cached copy when there is one).
# ansible-test needs the collection at .../ansible_collections/flowstream/platform inside a git
# checkout: the working tree (tracked and new files) is copied to .tmp/sanity/ for the run.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
export PATH="$top/.venv/bin:$PATH"

pip_version=$(python - <<'PY'
import re, ansible_test, pathlib
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", src.read_text()).group(1))
PY
)
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
mkdir -p "$(dirname "$cache")"
cmp -s tests/sanity/get_pip_offline.py "$cache" 2>/dev/null || cp tests/sanity/get_pip_offline.py "$cache"

work="$top/.tmp/sanity/ansible_collections/flowstream/platform"
rm -rf "$top/.tmp/sanity"
mkdir -p "$work"
git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- ./ "$work/"
cd "$work"
git init -q && git add -A
# openvswitch.openvswitch next to us, so imports of the dependency resolve
mkdir -p ../../openvswitch
cp -a "$top/collections/ansible_collections/openvswitch/openvswitch" ../../openvswitch/

ansible-test sanity --venv --python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  --color no --exclude tests/sanity/get_pip_offline.py "$@"
