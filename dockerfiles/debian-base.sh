#!/usr/bin/env bash
# A local Debian bookworm + Python 3.11 base image, for machines that cannot pull `python:3.11-slim` from a registry:
# debootstrap a minimal root file system and import it into Podman (or Docker). Does nothing if the image exists.
#
# Usage: dockerfiles/debian-base.sh [IMAGE]   (default localhost/bookworm-python:3.11); prints the image name.
# Then: podman build --build-arg BASE_IMAGE=localhost/bookworm-python:3.11 -f dockerfiles/api.dockerfile ...
set -euo pipefail
image="${1:-localhost/bookworm-python:3.11}"
engine="${CONTAINER_ENGINE:-$(command -v podman || command -v docker)}"
if "$engine" image inspect "$image" >/dev/null 2>&1; then
    echo "$image"
    exit 0
fi
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
echo "debian-base: debootstrap bookworm from $mirror (about a minute)" >&2
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | "$engine" import --change 'CMD ["python3"]' - "$image" >/dev/null
echo "$image"
