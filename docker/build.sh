#!/usr/bin/env bash
# build.sh builds every zzim image without a registry: the Debian base
# (base.sh), the host-built static binaries in docker/build/, then one image
# per service tagged zzim/<name>:dev. Quick when everything is up to date:
# pinned binaries are kept when their version matches, Docker reuses its
# layer cache, and go build is incremental.
#
#   docker/build.sh             # everything
#   docker/build.sh nats redis  # only these images (the base and binaries they need)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out=$here/build
natsVersion=v2.15.2
toxiproxyVersion=v2.12.0
allImages=(mariadb redis prometheus nats toxiproxy zzim)
start=$(date +%s.%N)

images=("$@")
if [ ${#images[@]} -eq 0 ]; then
	images=("${allImages[@]}")
fi

# The legacy builder works offline; BuildKit may try to reach a registry.
unset DOCKER_BUILDKIT

"$here/base.sh"
mkdir -p "$out"

wants() {
	local name
	for name in "${images[@]}"; do
		[ "$name" = "$1" ] && return 0
	done
	return 1
}

# The module versions come from go.mod; the checks below keep a stale binary
# from surviving a pin change.
buildBinaries() {
	cd "$repo"
	if wants nats && ! { [ -x "$out/nats-server" ] && "$out/nats-server" --version | grep -q "$natsVersion"; }; then
		echo "binaries: nats-server $natsVersion"
		CGO_ENABLED=0 go build -trimpath -o "$out/nats-server" github.com/nats-io/nats-server/v2
		"$out/nats-server" --version | grep -q "$natsVersion" || { echo "nats-server is not $natsVersion: check go.mod" >&2; exit 1; }
	fi
	if wants toxiproxy && ! { [ -x "$out/toxiproxy-server" ] && "$out/toxiproxy-server" --version | grep -q "${toxiproxyVersion#v}"; }; then
		echo "binaries: toxiproxy-server $toxiproxyVersion"
		CGO_ENABLED=0 go build -trimpath \
			-ldflags "-X github.com/Shopify/toxiproxy/v2.Version=${toxiproxyVersion#v}" \
			-o "$out/toxiproxy-server" github.com/Shopify/toxiproxy/v2/cmd/server
		grep -q "github.com/Shopify/toxiproxy/v2 $toxiproxyVersion" go.mod || { echo "toxiproxy is not pinned at $toxiproxyVersion in go.mod" >&2; exit 1; }
	fi
	if wants zzim; then
		echo "binaries: zzim"
		local rev
		rev=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo dev)
		CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$rev" -o "$out/zzim" ./cmd/zzim
	fi
}

# buildImage NAME [BINARY]: the context is a tar of the image's directory
# plus its binary, so no image sends the others' binaries to the daemon.
buildImage() {
	local name=$1 binary=${2:-}
	local args=(-C "$here/$name" .)
	if [ -n "$binary" ]; then
		args+=(-C "$out" "$binary")
	fi
	echo "image: zzim/$name:dev"
	local out
	# Quiet unless it fails: the legacy builder's deprecation notice is noise.
	if ! out=$(tar -c "${args[@]}" | docker build -q -t "zzim/$name:dev" - 2>&1); then
		echo "$out" >&2
		exit 1
	fi
}

buildBinaries
for name in "${images[@]}"; do
	case $name in
	nats) buildImage nats nats-server ;;
	toxiproxy) buildImage toxiproxy toxiproxy-server ;;
	zzim) buildImage zzim zzim ;;
	mariadb | redis | prometheus) buildImage "$name" ;;
	*)
		echo "unknown image $name (known: ${allImages[*]})" >&2
		exit 2
		;;
	esac
done

echo
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E '^zzim/' | sort
awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "elapsed: %.1fs\n", e - s }'
