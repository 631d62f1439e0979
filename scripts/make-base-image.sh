#!/usr/bin/env bash
# A local base image for the Dockerfile's cpu target, for machines that reach Debian's mirror but no
# image registry (python:3.11-slim-bookworm cannot be pulled): Debian bookworm made with debootstrap,
# git, tini, this machine's CA bundle (TLS to the package registries inside the build), and, as in
# the official image, a CPython 3.11 in /usr/local: the one running this script (Debian's own 3.11.2
# is older than the lock allows: pymdown-extensions needs >= 3.11.5), its standard library only.
# Imported as localhost/bookworm-python:3.11.
#
#   scripts/make-base-image.sh [IMAGE]       # needs root, debootstrap and podman (or docker)
#
# Then: podman build --build-arg PYTHON_IMAGE=localhost/bookworm-python:3.11 ... (README, "Containers").
set -euo pipefail

image="${1:-localhost/bookworm-python:3.11}"
engine="${CONTAINER_ENGINE:-$(command -v podman || command -v docker)}"
mirror="${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}"
mirror="${mirror:-http://deb.debian.org/debian}"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
python_prefix="${PYTHON_PREFIX:-$(python3 -c 'import sys; print(sys.base_prefix)')}"
version="$("$python_prefix/bin/python3" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$version" = 3.11 ] || { echo "make-base-image: $python_prefix is Python $version, not 3.11" >&2; exit 1; }

if "$engine" image exists "$image" 2>/dev/null; then
  echo "make-base-image: $image is already there"
  exit 0
fi
rootfs="$(mktemp -d /tmp/imdb-mlops-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "make-base-image: debootstrap bookworm from $mirror"
debootstrap --variant=minbase \
  --include=git,tini,ca-certificates,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,libreadline8,libncursesw6,libuuid1,libexpat1 \
  bookworm "$rootfs" "$mirror" >/dev/null
cp "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
echo "make-base-image: CPython $("$python_prefix/bin/python3" -V 2>&1 | cut -d' ' -f2) from $python_prefix"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/usr/local/lib"
cp -a "$python_prefix/bin/python3.11" "$rootfs/usr/local/bin/"
cp -a "$python_prefix"/lib/libpython3.11.so* "$rootfs/usr/local/lib/"
tar -C "$python_prefix/lib" --exclude=python3.11/site-packages --exclude='__pycache__' \
  --exclude=python3.11/test -c python3.11 | tar -C "$rootfs/usr/local/lib" -x
mkdir -p "$rootfs/usr/local/lib/python3.11/site-packages"
ln -sf python3.11 "$rootfs/usr/local/bin/python3"
ln -sf python3.11 "$rootfs/usr/local/bin/python"
chroot "$rootfs" ldconfig
chroot "$rootfs" python -c 'import ssl, sqlite3, ctypes, venv, ensurepip, lzma, bz2'
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | "$engine" import --change 'CMD ["python3"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
  - "$image" >/dev/null
echo "make-base-image: $image ($("$engine" image inspect --format '{{.Size}}' "$image" | numfmt --to=iec))"
