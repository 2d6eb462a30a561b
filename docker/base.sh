#!/usr/bin/env bash
# base.sh provides the image zzim/debian-base:bookworm, the only base every
# zzim Dockerfile builds FROM. No Dockerfile names a registry image, so a
# machine without a registry still builds everything: the base is pulled
# where a registry answers, otherwise made with debootstrap and docker import.
# Idempotent: exits at once when the image exists.
set -euo pipefail

image=zzim/debian-base:bookworm
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
pullTimeoutSeconds=${PULL_TIMEOUT_SECONDS:-20}

if docker image inspect "$image" >/dev/null 2>&1; then
	echo "base: $image present"
	exit 0
fi

echo "base: trying docker pull debian:bookworm-slim (timeout ${pullTimeoutSeconds}s)"
if timeout "$pullTimeoutSeconds" docker pull debian:bookworm-slim >/dev/null 2>&1; then
	docker tag debian:bookworm-slim "$image"
	echo "base: $image tagged from debian:bookworm-slim"
	exit 0
fi

echo "base: no registry; building $image with debootstrap from $mirror"
if ! command -v debootstrap >/dev/null 2>&1; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "base: debootstrap is missing and installing it needs root" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "base: debootstrap needs root" >&2
	exit 1
fi

root=$(mktemp -d /tmp/zzim-debian-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase "$suite" "$root" "$mirror"
# Keep the image small and apt usable inside builds.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
echo "deb $mirror $suite main" >"$root/etc/apt/sources.list"
echo "deb $mirror $suite-updates main" >>"$root/etc/apt/sources.list"
echo "deb http://deb.debian.org/debian-security $suite-security main" >>"$root/etc/apt/sources.list"
tar -C "$root" -c . | docker import \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'CMD ["/bin/bash"]' \
	- "$image"
echo "base: $image imported"
