#!/usr/bin/env bash
# The Click modular router's userlevel driver, built once from the pinned source (run by setup.sh).
#
#   FLOWSTREAM_CLICK_SOURCE   a tarball path or URL of Click at the pinned commit. Default: the
#                             vendored ../shared/vendor/click-9197a594b.tar.gz when it is there
#                             (machines without internet), else upstream's archive of the commit.
#   FLOWSTREAM_CLICK_PREFIX   where it is installed (default /opt/flowstream/click; bin/click).
#
# The source is checked before it is built: the sha256 of its *tree* (every file's path, exec bit
# and content, below the archive's top directory) must be the pinned one. That is the same for
# the vendored `git archive` and for GitHub's archive of the same commit, whose top directory and
# compression differ. Then the project's patches (scripts/click-*.patch) are applied:
#   click-hotswap.patch - a hot-swapped FromDevice keeps the old router's packet socket, so a
#     configuration swapped in with hotconfig loses no frame (upstream's drops the frames that
#     arrive while the new configuration is parsed: ~15 ms of traffic), and FromDevice, Counter
#     and the queues count on from the old router's counts and drops instead of from zero.
# A stamp in the prefix records the commit, tree and patches; when it matches, nothing is built
# again (a second `make test` or `make demo` takes no time here).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

commit=9197a594b1c314264935106297aff08d97cbe7ee
tree_sha256=9aff36592cd784949b3b661aba2f1212d7cc4ae861b3c1d772fc1b7158b1c16c
prefix=${FLOWSTREAM_CLICK_PREFIX:-/opt/flowstream/click}
# our patches on top of the pinned commit, applied in name order (the stamp names them)
patches=(scripts/click-*.patch)
stamp_want="click $commit tree $tree_sha256 userlevel patches $(cat "${patches[@]}" | sha256sum | cut -c1-16)"

if [ -x "$prefix/bin/click" ] && [ "$(cat "$prefix/.flowstream-click" 2>/dev/null)" = "$stamp_want" ]; then
  say "Click ${commit:0:9} in $prefix: nothing to do"
  exit 0
fi

vendored=../shared/vendor/click-${commit:0:9}.tar.gz
source=${FLOWSTREAM_CLICK_SOURCE:-}
if [ -z "$source" ]; then
  if [ -r "$vendored" ]; then source=$vendored; else source=https://github.com/kohler/click/archive/$commit.tar.gz; fi
fi

work=$(mktemp -d /tmp/flowstream-click-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
case "$source" in
  http://*|https://*)
    say "fetching Click from $source"
    curl -fsSL --retry 2 -o "$work/click.tar.gz" "$source" || die "could not fetch $source (set FLOWSTREAM_CLICK_SOURCE to a local copy of Click at commit $commit)";;
  *)
    [ -r "$source" ] || die "FLOWSTREAM_CLICK_SOURCE=$source: no such file (a tarball of Click at commit $commit, or a URL)"
    cp "$source" "$work/click.tar.gz";;
esac
mkdir "$work/src"
tar xzf "$work/click.tar.gz" -C "$work/src" || die "$source is not a gzip tarball"
top=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d | head -1)
[ -n "$top" ] && [ -x "$top/configure" ] || die "$source does not hold a Click source tree (no configure at its top)"
have=$(python3 - "$top" <<'PY'
import hashlib, os, stat, sys
top = sys.argv[1]
digest = hashlib.sha256()
for root, dirs, files in os.walk(top):
    dirs.sort()
    for name in sorted(files):
        path = os.path.join(root, name)
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            body = b"link:" + os.readlink(path).encode()
        else:
            with open(path, "rb") as handle:
                body = handle.read()
        digest.update(os.path.relpath(path, top).encode() + b"\0" + (b"x" if info.st_mode & 0o111 else b"-") + b"\0"
                      + hashlib.sha256(body).digest())
print(digest.hexdigest())
PY
)
[ "$have" = "$tree_sha256" ] || die "$source is not Click at commit $commit: its tree's sha256 is $have, the pinned one $tree_sha256"

for patch in "${patches[@]}"; do
  patch -s -p1 -d "$top" < "$patch" || die "$patch does not apply to Click $commit"
done

say "building Click ${commit:0:9} (userlevel driver) into $prefix: a one-time build of about 2-3 minutes on 2 cores"
start=$(date +%s)
log=$work/build.log
(
  cd "$top"
  ./configure --prefix="$prefix" --disable-linuxmodule --enable-userlevel --disable-dynamic-linking
  make -j"$(nproc)"
  rm -rf "$prefix"
  make install
) >"$log" 2>&1 || { tail -30 "$log" >&2; die "the Click build failed (the last lines are above)"; }
"$prefix/bin/click" -e 'InfiniteSource(LIMIT 3, STOP true) -> c :: Counter -> Discard;' >/dev/null 2>&1 ||
  die "the Click just built in $prefix does not run a one-line configuration"
echo "$stamp_want" > "$prefix/.flowstream-click"
say "Click ${commit:0:9} installed in $prefix ($(( $(date +%s) - start )) s)"
