#!/usr/bin/env bash
# One idempotent set-up step for flowstream.platform on Debian 12 (run as root):
#   Debian packages, the .venv with pinned Python packages, the collection importable by its
#   FQCN from this checkout, openvswitch.openvswitch in collections/, Click (userlevel, built once
#   from the pinned source: scripts/click.sh), Open vSwitch running.
# A second run only checks, and prints "setup: nothing to do" for each part.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the lab creates namespaces, links and bridges)"
[ -r /etc/debian_version ] || die "this set-up step is written for Debian 12"

# 1. Debian packages ---------------------------------------------------------------------
mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^\s*$/d' scripts/debian-packages.txt)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
else
  say "Debian packages: nothing to do"
fi

# 2. The virtual environment ---------------------------------------------------------------
py=${PYTHON:-python3}
stamp_want="$(sha256sum requirements-dev.txt | cut -d' ' -f1) $("$py" -c 'import sys; print(sys.version.split()[0])')"
if [ -x .venv/bin/python ] && [ "$(cat .venv/.flowstream-stamp 2>/dev/null)" = "$stamp_want" ]; then
  say ".venv: nothing to do"
else
  say "building .venv from requirements-dev.txt"
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  .venv/bin/pip install -q -r requirements-dev.txt 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$stamp_want" > .venv/.flowstream-stamp
fi

# 3. The collection, importable by its FQCN from the checkout -------------------------------
mkdir -p collections/ansible_collections/flowstream
if [ "$(readlink collections/ansible_collections/flowstream/platform 2>/dev/null)" != "../../.." ]; then
  rm -rf collections/ansible_collections/flowstream/platform
  ln -s ../../.. collections/ansible_collections/flowstream/platform
  say "linked the checkout as collections/ansible_collections/flowstream/platform"
else
  say "flowstream.platform link: nothing to do"
fi

# 4. openvswitch.openvswitch ----------------------------------------------------------------
ovs_want=2.1.1
ovs_dir=collections/ansible_collections/openvswitch/openvswitch
ovs_have=$(.venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['collection_info']['version'])" "$ovs_dir/MANIFEST.json" 2>/dev/null || true)
if [ "$ovs_have" = "$ovs_want" ]; then
  say "openvswitch.openvswitch $ovs_want: nothing to do"
elif timeout 30 .venv/bin/ansible-galaxy collection install "openvswitch.openvswitch:==$ovs_want" \
        -p collections --timeout 10 >/dev/null 2>&1; then
  say "openvswitch.openvswitch installed from Galaxy"
else
  say "Galaxy not reachable: taking openvswitch.openvswitch $ovs_want from the ansible==10.7.0 wheel"
  mkdir -p .cache/wheels
  ls .cache/wheels/ansible-10.7.0-py3-none-any.whl >/dev/null 2>&1 ||
    .venv/bin/pip download -q --no-deps -d .cache/wheels ansible==10.7.0 \
      2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  .venv/bin/python - "$ovs_want" <<'PY'
import json, os, shutil, sys, zipfile
want = sys.argv[1]
prefix = "ansible_collections/openvswitch/openvswitch/"
dest = os.path.join("collections", prefix)
with zipfile.ZipFile(".cache/wheels/ansible-10.7.0-py3-none-any.whl") as z:
    members = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
    version = json.loads(z.read(prefix + "MANIFEST.json"))["collection_info"]["version"]
    if version != want:
        sys.exit("setup: ERROR: the wheel holds openvswitch.openvswitch %s, not %s" % (version, want))
    shutil.rmtree(dest, ignore_errors=True)
    for name in members:
        target = os.path.join("collections", name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(name) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
print("setup: extracted %d files of openvswitch.openvswitch %s" % (len(members), version))
PY
fi

# 5. Click, built once from the pinned source (scripts/click.sh) ------------------------------
scripts/click.sh

# 6. Open vSwitch running (no systemd here: ovs-ctl, as LAB.md measured) --------------------
if timeout 5 ovs-vsctl --timeout=3 show >/dev/null 2>&1; then
  say "Open vSwitch: running, nothing to do"
else
  say "starting Open vSwitch"
  /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random 2>&1 | grep -v ulimit | sed 's/^/setup:   /'
  timeout 10 ovs-vsctl --timeout=5 show >/dev/null || die "Open vSwitch did not start (see /var/log/openvswitch)"
fi
