#!/usr/bin/env bash
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Build the "wire" guest image for VM processing modules: Debian's kernel plus a busybox
# initramfs that loads virtio-net and the Linux bridge, names its two NICs `left` and `right`
# (PCI slot order, as the VM kind lays them out), bridges them and prints a ready line on the
# serial console. A bump in the wire, nothing more.
#
#   scripts/build-guest-image.sh [--check] [--cache DIR] OUTDIR
#
# OUTDIR receives vmlinuz, initrd.img, build-info (and apt-offer, apt's answer). Idempotent: the image is rebuilt only when
# its inputs changed (the kernel package apt offers now, busybox-static's version, this script);
# the last line of output is "unchanged: ...", "built: ..." or, with --check, "would build: ...".
# The kernel package is fetched with `apt-get download` into the cache directory (default
# /var/cache/flowstream/guest-image, outside any lab state directory so lab-down/lab-up do not
# download it again); only the package of the current kernel is kept there.
set -euo pipefail

check=0
cache=${FLOWSTREAM_GUEST_CACHE:-/var/cache/flowstream/guest-image}
while [ $# -gt 0 ]; do
  case $1 in
    --check) check=1; shift ;;
    --cache) cache=$2; shift 2 ;;
    -h|--help) sed -n '5,19p' "$0"; exit 0 ;;
    --) shift; break ;;
    -*) echo "build-guest-image: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--check] [--cache DIR] OUTDIR" >&2; exit 2; }
out=$1

say() { printf 'build-guest-image: %s\n' "$*" >&2; }
die() { printf 'build-guest-image: ERROR: %s\n' "$*" >&2; exit 1; }

# Modules the guest needs, by name; their dependencies are resolved from the kernel's own
# modules.dep (generated with depmod: the Debian package does not ship it).
# pvpanic_mmio: the ISA pvpanic device the VM kind gives every domain (ACPI QEMU0001) - a guest
# that panics tells QEMU, and libvirt ends it (on_crash) instead of leaving it spinning
WANTED_MODULES="virtio_pci virtio_net bridge pvpanic_mmio"
# LAB.md's order for virtio-net on Debian 12's 6.1 kernel; compared (not trusted) below.
LABMD_VIRTIO_ORDER="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net"

for tool in apt-cache apt-get dpkg-deb depmod cpio gzip sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup.sh installs what this needs)"
done
busybox=/bin/busybox
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' ||
  die "busybox-static is not installed (it provides the guest's userland)"
busybox_version=$(dpkg-query -W -f='${Version}' busybox-static)

# 1. Which kernel does apt offer now? -------------------------------------------------------
# apt's answer changes only with its package lists and its configuration: it is kept in
# OUTDIR/apt-offer beside a key of those files (path, size, mtime) and asked again when the key
# differs (asking apt-cache twice costs ~1 s; lab-up checks the image on every run).
kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}'
}
apt_key() {
  find /var/lib/apt/lists /etc/apt -maxdepth 2 -type f ! -name lock ! -path '*/partial/*' -printf '%p %s %T@\n' 2>/dev/null |
    sort | sha256sum | cut -d' ' -f1
}
memo="$out/apt-offer"
pkg= version=
if [ -s "$memo" ] && [ "$(sed -n 1p "$memo")" = "$(apt_key)" ]; then
  read -r pkg version < <(sed -n 2p "$memo") || true
fi
if [ -z "$pkg" ] || [ -z "$version" ]; then
  pkg=$(kernel_pkg || true)
  if [ -z "$pkg" ] && [ "$check" = 0 ]; then
    say "apt does not know linux-image-amd64: running apt-get update"
    apt-get update -qq >/dev/null 2>&1 || true
    pkg=$(kernel_pkg || true)
  fi
  if [ -n "$pkg" ]; then
    version=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | awk '$1 == "Version:" {print $2; exit}')
    if [ "$check" = 0 ] && [ -n "$version" ]; then
      mkdir -p "$out" && printf '%s\n%s %s\n' "$(apt_key)" "$pkg" "$version" > "$memo"
    fi
  fi
fi
if [ -n "$pkg" ]; then
  deb="$cache/${pkg}_${version}_amd64.deb"
else
  # no package lists at all: fall back to the newest package already in the cache
  deb=$(find "$cache" -maxdepth 1 -name 'linux-image-[0-9]*_amd64.deb' -printf '%T@ %p\n' 2>/dev/null |
        sort -rn | head -1 | cut -d' ' -f2- || true)
  [ -n "$deb" ] || die "apt offers no linux-image-amd64 and the cache $cache holds no kernel package"
  pkg=$(basename "$deb" | cut -d_ -f1)
  version=$(basename "$deb" | cut -d_ -f2)
  say "apt offers no linux-image-amd64; using the cached $pkg $version"
fi
kver=${pkg#linux-image-}

script_sum=$(sha256sum "$0" | cut -d' ' -f1)
want_info="kernel=$pkg $version
busybox-static=$busybox_version
script=$script_sum"

if [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ] && [ "$(cat "$out/build-info" 2>/dev/null | sed -n '1,3p')" = "$want_info" ]; then
  echo "unchanged: $out ($pkg $version, busybox $busybox_version)"
  exit 0
fi
if [ "$check" = 1 ]; then
  echo "would build: $out ($pkg $version, busybox $busybox_version)"
  exit 0
fi

# 2. The kernel package, from apt, into the cache ------------------------------------------
mkdir -p "$cache" "$out"
if [ ! -s "$deb" ]; then
  say "downloading $pkg $version into $cache"
  fetch() { (cd "$cache" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$version" >/dev/null); }
  if ! fetch; then
    say "apt-get download failed: running apt-get update and trying again"
    apt-get update -qq >/dev/null 2>&1 || true
    fetch || die "apt-get download $pkg=$version failed"
  fi
  [ -s "$deb" ] || die "apt-get download did not produce $deb"
fi
# keep only the current kernel package in the cache
for old in "$cache"/linux-image-[0-9]*_amd64.deb; do
  [ "$old" = "$deb" ] || rm -f "$old"
done

# 3. Unpack, resolve module order --------------------------------------------------------------
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
dpkg -x "$deb" "$work/kernel"
kdir="$work/kernel/lib/modules/$kver"
[ -d "$kdir" ] || die "$deb has no lib/modules/$kver"
vmlinuz="$work/kernel/boot/vmlinuz-$kver"
[ -f "$vmlinuz" ] || die "$deb has no boot/vmlinuz-$kver"
depmod -b "$work/kernel" "$kver"

# modules.dep lists a module's dependencies so that loading them last-to-first works
order=$(awk -v wanted="$WANTED_MODULES" '
  function base(p,   n) { n = split(p, parts, "/"); p = parts[n]; sub(/\.ko(\.(xz|zst|gz))?$/, "", p); gsub("-", "_", p); return p }
  {
    mod = $1; sub(/:$/, "", mod); name = base(mod)
    path[name] = mod; deps[name] = ""
    for (i = NF; i >= 2; i--) deps[name] = deps[name] " " base($i)
  }
  END {
    n = split(wanted, w, " ")
    for (i = 1; i <= n; i++) {
      if (!(w[i] in path)) { print "MISSING " w[i]; exit 1 }
      m = split(deps[w[i]], d, " ")
      for (j = 1; j <= m; j++) if (!(d[j] in seen)) { seen[d[j]] = 1; printf "%s %s\n", d[j], path[d[j]] }
      if (!(w[i] in seen)) { seen[w[i]] = 1; printf "%s %s\n", w[i], path[w[i]] }
    }
  }' "$kdir/modules.dep") || die "modules.dep of $kver lacks a wanted module: $order"
names=$(echo "$order" | awk '{printf "%s%s", sep, $1; sep = " "}')
virtio_order=$(echo "$names" | tr ' ' '\n' | grep -vE '^(bridge|stp|llc|pvpanic|pvpanic_mmio)$' | tr '\n' ' ' | sed 's/ $//')
if [ "$virtio_order" = "$LABMD_VIRTIO_ORDER" ]; then
  say "module order from modules.dep of $kver: $names (virtio part as LAB.md lists it)"
else
  say "module order from modules.dep of $kver: $names (LAB.md lists '$LABMD_VIRTIO_ORDER' for virtio: this kernel differs)"
fi

# 4. The initramfs tree --------------------------------------------------------------------------
root="$work/root"
mkdir -p "$root"/{bin,dev,etc/flowstream,lib/modules,proc,sys,tmp,run}
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
echo "$order" | while read -r name rel; do
  src="$kdir/$rel"
  case $src in
    *.ko) cp "$src" "$root/lib/modules/$name.ko" ;;
    *.ko.xz) xz -dc "$src" > "$root/lib/modules/$name.ko" ;;
    *.ko.zst) zstd -qdc "$src" > "$root/lib/modules/$name.ko" ;;
    *.ko.gz) gzip -dc "$src" > "$root/lib/modules/$name.ko" ;;
    *) die "unexpected module file $rel" ;;
  esac
done
echo "$names" > "$root/etc/flowstream/modules"
printf 'flowstream wire guest\nkernel %s %s\nbusybox-static %s\n' "$pkg" "$version" "$busybox_version" > "$root/etc/flowstream/build"
if [ "$(id -u)" = 0 ]; then
  mknod -m 600 "$root/dev/console" c 5 1
  mknod -m 666 "$root/dev/null" c 1 3
fi

cat > "$root/init" <<'INIT'
#!/bin/sh
# flowstream wire guest: bridge the two legs, nothing else.
/bin/busybox --install -s /bin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec 0</dev/console 1>/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
say() { echo "flowstream-wire: $* (t=$(cut -d' ' -f1 /proc/uptime)s)"; }
say "$(uname -r) up; $(cat /etc/flowstream/build | tr '\n' ' ')"
# a wire stays silent: no IPv6 link-local addresses, router solicitations or MLD reports
echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6
# shellcheck disable=SC2013 # one module name per word
for m in $(cat /etc/flowstream/modules); do
  insmod "/lib/modules/$m.ko" || say "insmod $m failed"
done
# the legs, in PCI slot order: the VM kind puts left in slot 3 and right in slot 4
nics() {
  for n in /sys/class/net/*; do
    [ -e "$n/device" ] && echo "$(basename "$(readlink -f "$n/device")") $(basename "$n")"
  done | sort | cut -d' ' -f2
}
i=0
while [ "$(nics | wc -l)" -lt 2 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
# shellcheck disable=SC2046 # one NIC name per word
set -- $(nics)
if [ $# -lt 2 ]; then
  say "FAILED: found $# NIC(s) ($*), need two"
else
  ip link set "$1" name left
  ip link set "$2" name right
  brctl addbr wire
  # no STP (a wire takes part in no spanning tree: ports forward at once), no IGMP snooping
  echo 0 > /sys/class/net/wire/bridge/stp_state
  echo 0 > /sys/class/net/wire/bridge/forward_delay
  echo 0 > /sys/class/net/wire/bridge/multicast_snooping
  for leg in left right; do
    brctl addif wire $leg
    ip link set $leg up
  done
  ip link set wire up
  say "ready: bridging left $(cat /sys/class/net/left/address) and right $(cat /sys/class/net/right/address)"
fi
# a shell on the serial console (virsh console) for whoever needs to look inside
while :; do
  setsid cttyhack sh -l
  sleep 1
done
INIT
chmod 755 "$root/init"

# 5. Reproducible cpio + gzip, installed atomically ------------------------------------------
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --reproducible --quiet) | gzip -9n > "$work/initrd.img"
cp "$vmlinuz" "$work/vmlinuz"
chmod 644 "$work/vmlinuz" "$work/initrd.img"
mv -f "$work/vmlinuz" "$out/vmlinuz"
mv -f "$work/initrd.img" "$out/initrd.img"
printf '%s\nmodules=%s\n' "$want_info" "$names" > "$out/build-info.new"
mv -f "$out/build-info.new" "$out/build-info"
echo "built: $out ($pkg $version, busybox $busybox_version, initrd $(stat -c %s "$out/initrd.img") bytes)"
