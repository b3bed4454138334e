#!/usr/bin/env bash
# Builds a local Python 3.11 base image from Debian packages, for machines that reach a Debian
# mirror and PyPI but no container registry (CI here, air-gapped networks). Every Dockerfile of
# the project takes it as `--build-arg BASE_IMAGE=accidents-base:local` (compose: BASE_IMAGE in
# .env); elsewhere they default to the public python:3.11-slim and none of this is needed.
#
#   sudo scripts/docker/build_base_image.sh [--force] [IMAGE]     (default IMAGE accidents-base:local)
#
# What goes in: Debian bookworm (minbase) + python3 (3.11) + python3-venv + ca-certificates,
# via debootstrap, then `docker import`. Host-specific things are read at run time and never
# written into the repository:
#   - the Debian mirror: BASE_MIRROR, else the one the host's apt uses (`apt-cache policy`);
#     the image's /etc/apt/sources.list points at the same mirror, so `apt-get` works in builds;
#   - extra CA certificates: every /usr/local/share/ca-certificates/*.crt of the host (e.g. a
#     corporate TLS proxy's CA) is added to the image's trust store, so HTTPS (PyPI, apt over
#     https) works inside builds and containers. BASE_EXTRA_CA_DIR overrides the folder.
# Needs root, debootstrap (apt-get install debootstrap) and a running Docker engine. ~1 minute.
set -euo pipefail
force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
image="${1:-${BASE_IMAGE:-accidents-base:local}}"
suite="${BASE_SUITE:-bookworm}"
ca_dir="${BASE_EXTRA_CA_DIR:-/usr/local/share/ca-certificates}"
say() { echo "build_base_image: $*" >&2; }

if [ "$force" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
  say "$image exists (use --force to rebuild)"
  exit 0
fi
[ "$(id -u)" = 0 ] || { say "debootstrap needs root"; exit 1; }
if ! command -v debootstrap >/dev/null 2>&1; then
  say "installing debootstrap (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
fi

# The host's mirrors for <suite>, <suite>-updates and <suite>-security, as apt resolved them.
mirror_for() {  # suite -> URI or empty
  apt-cache policy 2>/dev/null | awk -v s="$1/main" '$3 == s && $2 ~ /^https?:/ { print $2; exit }'
}
mirror="${BASE_MIRROR:-$(mirror_for "$suite")}"
mirror="${mirror:-http://deb.debian.org/debian}"
updates_mirror="$(mirror_for "$suite-updates")"
security_mirror="${BASE_SECURITY_MIRROR:-$(mirror_for "$suite-security")}"
say "suite $suite, mirror $mirror${security_mirror:+, security $security_mirror}"

work="$(mktemp -d "${TMPDIR:-/tmp}/accidents-base.XXXXXX")"
rootfs="$work/rootfs"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
start=$(date +%s)

debootstrap --variant=minbase \
  --include=ca-certificates,python3,python3-venv,python-is-python3,passwd,tzdata \
  "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  say "debootstrap failed"
  exit 1
}

# apt inside the image: the same mirrors (and, like the host, no Valid-Until check when the host
# has none: snapshot mirrors serve Release files past their validity date).
{
  echo "deb $mirror $suite main"
  [ -n "$updates_mirror" ] && echo "deb $updates_mirror $suite-updates main"
  [ -n "$security_mirror" ] && echo "deb $security_mirror $suite-security main"
} >"$rootfs/etc/apt/sources.list"
if apt-config dump 2>/dev/null | grep -q '^Acquire::Check-Valid-Until "false"'; then
  echo 'Acquire::Check-Valid-Until "false";' >"$rootfs/etc/apt/apt.conf.d/99no-check-valid-until"
fi
# Like the official Debian images: no recommends, no docs or caches left by apt.
cat >"$rootfs/etc/apt/apt.conf.d/99docker-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
EOF

n_ca=0
for crt in "$ca_dir"/*.crt; do
  [ -f "$crt" ] || continue
  cp "$crt" "$rootfs/usr/local/share/ca-certificates/"
  n_ca=$((n_ca + 1))
done
chroot "$rootfs" update-ca-certificates >/dev/null
say "added $n_ca CA certificate(s) from $ca_dir"

python_version="$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
case "$python_version" in
  3.11.*) ;;
  *) say "expected Python 3.11 in $suite, found $python_version"; exit 1 ;;
esac

rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/*.log \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/tmp/*

tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  --message "Debian $suite minbase + Python $python_version (scripts/docker/build_base_image.sh)" \
  - "$image" >/dev/null
say "$image built in $(($(date +%s) - start)) s (Python $python_version, $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
