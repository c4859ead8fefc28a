#!/usr/bin/env bash
# Build the service's image, here as on Render: scripts/build_image.sh [lean|full] [-- extra build arguments]
#
#   scripts/build_image.sh lean                      the 512 MB web image (default)
#   scripts/build_image.sh full                      the animation worker's image (torch, the face models)
#   scripts/build_image.sh lean -- --build-arg STRICT_MODELS=1    fail when a model cannot be provisioned
#
# Builder: docker (BuildKit) when its daemon answers, else buildah, installed with apt-get from
# Debian packages when missing (with podman, to run the image: scripts/bench_shapes.py).
# Air-gapped: when the base image (PYTHON_IMAGE, the Dockerfile's default) cannot be pulled, an
# equivalent base is made from Debian packages with debootstrap (Python 3.11 from the Debian
# mirror apt is configured with) and the build uses it: nothing but the Debian mirror and the
# package index is needed.
# pip: the host's own configuration (`pip config list`: index URLs, find-links, constraints, the
# certificate bundle) is given to pip inside the build, local folders and files mounted read-only
# (buildah; docker builds use pip's defaults). Nothing of this machine is written
# into the repository: it is all read here, at build time.
# Environment: IMAGE_TAG (default speech-api:<target>), PYTHON_IMAGE (a base to use as it is),
# BUILDER (docker|buildah, to choose).
# The last line printed is the image reference.
set -euo pipefail

target=${1:-lean}
shift || true
[ "${1:-}" = "--" ] && shift
case "$target" in lean|full) ;; *) echo "usage: $0 [lean|full] [-- build arguments]" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
tag=${IMAGE_TAG:-speech-api:$target}
default_base=$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$root/Dockerfile")
base=${PYTHON_IMAGE:-$default_base}
work=$(mktemp -d /tmp/build-image.XXXX)
trap 'rm -rf "$work"' EXIT
say() { echo "build_image: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- builder ---------------------------------------------------------------------------------------
builder=${BUILDER:-}
if [ -z "$builder" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then builder=docker; else builder=buildah; fi
fi
if [ "$builder" = buildah ] && ! command -v buildah >/dev/null; then
  say "installing buildah and podman from Debian packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman runc uidmap fuse-overlayfs debootstrap >&2
fi
# Builds run with chroot isolation: crun, buildah's default runtime, refuses hosts whose cgroups are
# in hybrid mode, and a build needs no cgroup of its own.
say "builder: $builder"

# --- base: the published image, else one made from Debian packages -------------------------------
have_image() { if [ "$builder" = docker ]; then docker image inspect "$1" >/dev/null 2>&1; else buildah inspect --type image "$1" >/dev/null 2>&1; fi; }
pull_image() { if [ "$builder" = docker ]; then timeout 120 docker pull -q "$1" >/dev/null 2>&1; else timeout 120 buildah pull -q "$1" >/dev/null 2>&1; fi; }
debian_mirror() {
  # The mirror apt uses here (deb822 .sources or the one-line format); Debian's own name otherwise.
  local uri
  uri=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 | awk '{print $1}')
  [ -n "$uri" ] || uri=$(awk '$1=="deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  echo "${uri:-http://deb.debian.org/debian}"
}
if ! have_image "$base" && ! pull_image "$base"; then
  local_base=localhost/speech-api-base:bookworm-py3.11
  if ! have_image "$local_base"; then
    say "$base cannot be pulled: making $local_base from Debian packages (debootstrap, about 2 minutes)"
    command -v debootstrap >/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
    rootfs=$work/rootfs
    as_root debootstrap --variant=minbase --include=python3.11,python3-venv,python-is-python3,ca-certificates \
      bookworm "$rootfs" "$(debian_mirror)" >&2
    as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    if [ "$builder" = docker ]; then
      as_root tar -C "$rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$local_base" >/dev/null
    else
      ctr=$(buildah from scratch)
      mnt=$(buildah mount "$ctr")
      as_root cp -a "$rootfs"/. "$mnt"/
      buildah umount "$ctr" >/dev/null
      buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
        --cmd python3 "$ctr"
      buildah commit -q "$ctr" "$local_base" >/dev/null
      buildah rm "$ctr" >/dev/null
    fi
    as_root rm -rf "$rootfs"
  fi
  say "base: $local_base (made from Debian packages; $base could not be pulled)"
  base=$local_base
fi

# --- pip: this machine's configuration, given to pip inside the build -------------------------------
pip_cmd=$(command -v pip3 || command -v pip || true)
conf=$work/pip.conf
volumes=()
mount_ro() { # a local file or folder named by pip's configuration, at the same path inside the build
  [ -e "$1" ] || return 1
  for v in "${volumes[@]:-}"; do [ "$v" = "--volume=$1:$1:ro" ] && return 0; done
  volumes+=("--volume=$1:$1:ro")
}
declare -A pip_settings=()
if [ -n "$pip_cmd" ]; then
  # `global.key='value'`, `:env:.key='value'` (PIP_* variables): one section, a key once (the last wins).
  while IFS= read -r line; do
    key=${line%%=*}; key=${key##*.}; value=${line#*=}; value=${value#\'}; value=${value%\'}
    case "$key" in
      index-url|extra-index-url|find-links|constraint|cert|trusted-host|timeout|default-timeout|retries) ;;
      *) continue ;;
    esac
    kept=()
    for item in $value; do
      path=${item#file://}
      if [ "${path#/}" != "$path" ]; then  # a local path: mounted, or left out when it does not exist
        [ -e "$path" ] || { say "pip config: $item does not exist here, left out"; continue; }
        case "$key" in  # a local index's pages link to files beside it (../files): its parent goes in
          index-url|extra-index-url) mount_ro "$(dirname "${path%/}")" ;;
          *) mount_ro "$path" ;;
        esac
      fi
      kept+=("$item")
    done
    if [ ${#kept[@]} -gt 0 ]; then pip_settings[$key]="${kept[*]}"; fi
  done < <("$pip_cmd" config list 2>/dev/null)
fi
echo "[global]" >"$conf"
for key in "${!pip_settings[@]}"; do echo "$key = ${pip_settings[$key]}" >>"$conf"; done
say "pip configuration for the build: $(grep -c = "$conf") settings from \`pip config list\`"

# npm: the registry this machine's npm is configured for, for the 54 Kokoro voices (NPM_REGISTRY).
npm_args=()
if command -v npm >/dev/null && registry=$(npm config get registry 2>/dev/null) && [ -n "$registry" ]; then
  npm_args=(--build-arg "NPM_REGISTRY=$registry")
fi

# --- build -----------------------------------------------------------------------------------------
start=$(date +%s)
if [ "$builder" = docker ]; then
  # BuildKit has no build volumes: its pip reads the configuration as a secret (RUN --mount in the
  # Dockerfile would be needed for local folders, which a remote builder cannot see anyway).
  DOCKER_BUILDKIT=1 docker build --network host --target "$target" --build-arg "PYTHON_IMAGE=$base" \
    "${npm_args[@]}" "$@" -t "$tag" "$root" >&2
else
  # pip reads /etc/pip.conf: this machine's configuration, for the build only (not in the image).
  buildah build --layers --network host --isolation chroot --target "$target" \
    --build-arg "PYTHON_IMAGE=$base" "${npm_args[@]}" --volume "$conf:/etc/pip.conf:ro" "${volumes[@]}" "$@" \
    -t "$tag" "$root" >&2
fi
say "built $tag in $(( $(date +%s) - start )) s"
echo "$tag"
