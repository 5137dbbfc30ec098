#!/usr/bin/env bash
# Builds the container image without a container engine and pushes it: the root
# filesystem of scripts/image/rootfs.sh as one reproducible layer (GNU tar: names sorted,
# every mtime SOURCE_DATE_EPOCH, owner 0:0, no atime/ctime/xattrs), appended to an empty
# OCI base and given the configuration of scripts/image/config with go-containerregistry's
# crane. Prints the pushed image's digest (sha256:...) as its last line.
#
# The same ROOTFS and SOURCE_DATE_EPOCH give the same digest: nothing in the layer or the
# config depends on the machine, the clock or the order files were written in.
#
# Usage: scripts/image/build.sh ROOTFS REF [LABEL=VALUE...]
#   ROOTFS  the output of scripts/image/rootfs.sh
#   REF     where to push, e.g. localhost:5000/spot-autoscaler:0.1.0
#   LABEL=VALUE  OCI labels (org.opencontainers.image.version=0.1.0, ...)
# Env: CRANE (default: crane on PATH), SOURCE_DATE_EPOCH (default 0),
#      CRANE_FLAGS (e.g. --insecure for a plain-HTTP registry that is not localhost).
set -euo pipefail
export LC_ALL=C
die() { echo "scripts/image/build.sh: $*" >&2; exit 1; }
[[ $# -ge 2 ]] || die "usage: build.sh ROOTFS REF [LABEL=VALUE...]"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/image/config
source "$here/config"
rootfs="$1" ref="$2"
shift 2
crane="${CRANE:-$(command -v crane || true)}"
[[ -x "$crane" ]] || die "crane not found: set CRANE=/path/to/crane (scripts/image/test.sh builds it from the Go module proxy)"
[[ -x "$rootfs$IMAGE_ENTRYPOINT" ]] || die "$rootfs has no executable $IMAGE_ENTRYPOINT: make it with scripts/image/rootfs.sh"
epoch="${SOURCE_DATE_EPOCH:-0}"
[[ "$epoch" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH=$epoch is not a number of seconds"
read -r -a cflags <<<"${CRANE_FLAGS:-}"
labels=()
for l in "$@"; do
  [[ "$l" == ?*=* ]] || die "label '$l' is not LABEL=VALUE"
  labels+=(--label "$l")
done
case "$(dpkg --print-architecture)" in
  amd64) platform=linux/amd64 ;;
  arm64) platform=linux/arm64 ;;
  *) die "no OCI platform known for Debian architecture $(dpkg --print-architecture)" ;;
esac

work="$(mktemp -d "${TMPDIR:-/tmp}/image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# One layer. Top-level names are given sorted; --sort=name orders what tar finds below.
mapfile -t top < <(cd "$rootfs" && ls -A | sort)
tar --create --file="$work/layer.tar" --directory="$rootfs" --format=gnu --sort=name \
  --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --no-acls --no-xattrs --no-selinux \
  -- "${top[@]}"

# Empty OCI base + the layer, pushed; then the config, pushed under the same tag. crane
# stamps no time: the config's "created" stays the zero time of the empty base.
"$crane" "${cflags[@]}" append --oci-empty-base --new_layer "$work/layer.tar" --new_tag "$ref" >/dev/null
"$crane" "${cflags[@]}" mutate "$ref" --tag "$ref" --set-platform "$platform" \
  --entrypoint "$IMAGE_ENTRYPOINT" --user "$IMAGE_USER" --exposed-ports "$IMAGE_PORT" \
  "${labels[@]}" >/dev/null
"$crane" "${cflags[@]}" digest "$ref"
