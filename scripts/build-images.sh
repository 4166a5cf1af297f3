#!/usr/bin/env bash
# Builds the project's container images with no registry at all:
#   localhost/modelroll-pause:dev     the Pod sandbox, FROM scratch + the static `pause` binary
#                                     that tests/cluster/build-tools.sh builds
#   localhost/modelroll-server:dev    server_image/Dockerfile     } on localhost/modelroll-base:bookworm,
#   localhost/modelroll-operator:dev  operator/Dockerfile         } a Debian base made by debootstrap
# and exports each as an OCI archive into
#   ${MODELROLL_CACHE:-~/.cache/modelroll}/images/<name>-<hash>.oci.tar
# where <hash> covers the image's inputs (working-tree contents, not git), so an edit rebuilds
# only the images it touches; an image whose archive exists is not rebuilt.
#
#   scripts/build-images.sh                   build what is missing, print "NAME ARCHIVE" lines last
#   scripts/build-images.sh --print-archives  only print the lines (no build, exit 0 even if an
#                                             archive is missing); the launcher uses this
#
# Needs root: debootstrap, and buildah's rootful store (kept in the cache, never the system's).
set -Eeuo pipefail  # -E: the ERR trap that names the failed step also fires inside functions

IMAGES=(modelroll-pause modelroll-server modelroll-operator)
SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,python3-pip,ca-certificates
BASE_IMAGE=localhost/modelroll-base:$SUITE
# Part of every hash: bump it when the way this script builds changes, to rebuild everything.
RECIPE="build-images v1"

repo=$(cd "$(dirname "$0")/.." && pwd)
cache_root=${MODELROLL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelroll}
images_dir=$cache_root/images
store=$cache_root/buildah

log() { echo "build-images: $*" >&2; }
sha() { sha256sum | cut -c1-12; }

# Every file under the given repo paths as "sha256  path" lines in a stable order, from the
# working tree (an uncommitted edit counts); bytecode caches and egg-info are not inputs.
tree_digest() {
  (cd "$repo" && find "$@" \( -name __pycache__ -o -name '*.egg-info' \) -prune -o -type f -print0 |
    LC_ALL=C sort -z | xargs -0 -r sha256sum)
}

# The base depends only on its recipe, not on the mirror or the day it was made: it is
# rebuilt when the recipe changes (or its tarball is deleted from the cache).
base_key=$(echo "$RECIPE suite=$SUITE variant=minbase include=$BASE_PACKAGES" | sha)
rootfs_tar=$images_dir/rootfs-$SUITE-$base_key.tar

app_key() {  # app_key DIR: the hash of <DIR>/Dockerfile's image
  local dir=$1
  {
    echo "$RECIPE base=$base_key"
    tree_digest "$dir/Dockerfile" "$dir/Dockerfile.dockerignore" pyproject.toml \
      common/src "$dir/src"
  } | sha
}

pause_containerfile=$repo/tests/cluster/pause.Containerfile
pause_bin=$("$repo/tests/cluster/build-tools.sh" --print-bin-dir)/pause

declare -A archive
archive[modelroll-server]=$images_dir/modelroll-server-$(app_key server_image).oci.tar
archive[modelroll-operator]=$images_dir/modelroll-operator-$(app_key operator).oci.tar
if [ -f "$pause_bin" ]; then
  archive[modelroll-pause]=$images_dir/modelroll-pause-$(
    { echo "$RECIPE"; sha256sum <"$pause_containerfile"; sha256sum <"$pause_bin"; } | sha
  ).oci.tar
else
  # The hash needs the binary; this name is never written, so the launcher sees it missing.
  archive[modelroll-pause]=$images_dir/modelroll-pause-no-pause-binary.oci.tar
fi

print_archives() {
  local name
  for name in "${IMAGES[@]}"; do echo "$name ${archive[$name]}"; done
}

if [ "${1:-}" = "--print-archives" ]; then
  print_archives
  exit 0
fi
[ $# -eq 0 ] || { log "usage: $0 [--print-archives]"; exit 2; }

step=""
fail() {
  local rc=$?
  log "FAILED at step '$step' (exit $rc); see the output above"
  exit "$rc"
}
trap fail ERR

step="check"
[ "$(id -u)" -eq 0 ] || { log "needs root (debootstrap, buildah's rootful store)"; false; }
[ -f "$pause_bin" ] || { log "no pause binary at $pause_bin: run 'make cluster-tools' first"; false; }

step="install buildah and debootstrap"
"$repo/scripts/install-debian-packages.sh" buildah=buildah debootstrap=debootstrap

mkdir -p "$images_dir" "$store/tmp" "$store/network"
# One build at a time per cache: the store, the temporary names and the stale-archive
# cleanup below assume it.
exec 9>"$images_dir/.lock"
flock -n 9 || { log "waiting for another build-images.sh on $cache_root"; flock 9; }

missing=()
for name in "${IMAGES[@]}"; do
  [ -f "${archive[$name]}" ] || missing+=("$name")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "all images cached in $images_dir"
  print_archives
  exit 0
fi
log "to build: ${missing[*]}"

# buildah with its own store in the cache (base layers are reused across builds, the system's
# store is never touched) and its temporary files there too (an image export is hundreds of MB).
# Its network backend (CNI here, no netavark installed) creates a lock file in its config dir
# even for --network host: point that at the cache instead of /etc/cni/net.d. This file
# replaces the system's containers.conf for these builds; Debian's only restates the defaults.
printf '# written by scripts/build-images.sh\n[network]\nnetwork_config_dir = "%s"\n' \
  "$store/network" >"$store/containers.conf"
bh() {
  CONTAINERS_CONF=$store/containers.conf TMPDIR=$store/tmp \
    buildah --root "$store/root" --runroot "$store/runroot" "$@"
}
# One thing buildah 1.28 writes outside its store with no option to move it: as root, a blob
# digest cache in /var/lib/containers/cache. Removed again at exit if this run created it.
made_var_lib_containers=""
[ -e /var/lib/containers ] || made_var_lib_containers=1

# Everything temporary lives under one directory in the cache, removed on exit.
work=$(mktemp -d "$images_dir/.work.XXXXXX")
# debootstrap mounts /proc and /sys inside its target; a failed or interrupted run can leave
# them mounted. Unmount whatever is under DIR, then delete without crossing into another file
# system, so a mount that would not go away is never emptied.
remove_tree() {
  local dir=$1 m
  awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" || true; done
  rm -rf --one-file-system "$dir"
}
cleanup() {
  remove_tree "$work"
  # A killed build can leave working containers (and their mounts) in the store; the store is
  # this script's alone and the lock is held, so all of them are leftovers.
  bh rm --all >/dev/null 2>&1 || true
  if [ -n "$made_var_lib_containers" ]; then
    rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
    rmdir /var/lib/containers/cache /var/lib/containers 2>/dev/null || true
  fi
}
trap cleanup EXIT

# A clean slate for the same reason (an earlier run may have been killed mid-build).
bh rm --all >/dev/null

timed() {  # timed STEP COMMAND...: run COMMAND as STEP, logging the seconds it took
  step=$1
  shift
  local start=$SECONDS
  log "$step ..."
  "$@"
  log "$step: done in $((SECONDS - start)) s"
}

# The mirror apt already uses for $SUITE (deb822 sources first, then sources.list), so the
# base comes from the same place as the host's packages; MODELROLL_DEBIAN_MIRROR overrides.
debian_mirror() {
  local m=${MODELROLL_DEBIAN_MIRROR:-}
  if [ -z "$m" ] && [ -r /etc/apt/sources.list.d/debian.sources ]; then
    m=$(awk -v suite="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
      { types = uris = suites = ""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^Types:/) types = $i; else if ($i ~ /^URIs:/) uris = $i; else if ($i ~ /^Suites:/) suites = $i
        }
        if (types ~ /[ \t]deb([ \t]|$)/ && (suites " ") ~ ("[ \t]" suite "[ \t]")) {
          sub(/^URIs:[ \t]*/, "", uris); split(uris, u, /[ \t]+/); print u[1]; exit
        } }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
    m=$(awk -v suite="$SUITE" '{ line = $0; gsub(/\[[^]]*\]/, "", line); split(line, f, /[ \t]+/) }
      f[1] == "deb" && f[3] == suite { print f[2]; exit }' /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

make_rootfs() {
  local root=$work/rootfs mirror
  mirror=$(debian_mirror)
  log "debootstrap $SUITE from $mirror"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$root" "$mirror" >&2
  # No apt caches or package lists in the image (apt-get update fetches fresh ones). debootstrap
  # copies the host's resolv.conf and hostname in: the runtime mounts its own over them, and
  # the host's must not ship in the image.
  rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/cache/apt/archives/partial/* "$root"/var/lib/apt/lists/*
  : >"$root/etc/resolv.conf"
  : >"$root/etc/hostname"
  # --numeric-owner: ownership by number, as in the rootfs (not mapped through the host's
  # names); modes incl. setuid/setgid are kept. /dev, /proc and /sys are the runtime's.
  tar --numeric-owner -C "$root" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -cf "$work/rootfs.tar" .
  mv -f "$work/rootfs.tar" "$rootfs_tar"  # a rename: a killed run never leaves half a tarball
  remove_tree "$root"
  local f
  for f in "$images_dir"/rootfs-"$SUITE"-*.tar; do
    [ "$f" = "$rootfs_tar" ] || rm -f "$f"
  done
}

make_base_image() {
  # ADD extracts the tarball keeping its owners and modes (`buildah copy` would reset the
  # groups, e.g. /etc/shadow's). PATH: the image config of FROM scratch has none, and the
  # app Dockerfiles extend it (ENV PATH=/opt/modelroll/bin:$PATH). The label records which
  # rootfs the image was made from.
  local ctx=$work/base
  mkdir -p "$ctx"
  ln "$rootfs_tar" "$ctx/rootfs.tar" 2>/dev/null || cp "$rootfs_tar" "$ctx/rootfs.tar"
  printf '%s\n' 'FROM scratch' 'ADD rootfs.tar /' \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' >"$ctx/Containerfile"
  bh bud --pull=never --quiet --label "io.modelroll.rootfs=$base_key" -f "$ctx/Containerfile" \
    -t "$BASE_IMAGE" "$ctx" >/dev/null
  rm -f "$ctx/rootfs.tar"
}

# bud flags common to the app images:
#   --pull=never     no registry, ever: FROM must name an image already in the store
#   --network host   the RUN steps resolve and reach PyPI like the host does; also no netavark
#                    network or firewall rules are created for the build
#   -v certs         pip inside the build trusts what the host trusts (outbound TLS here is
#                    re-signed by a CA only the host has). A RUN-time mount only: nothing of it
#                    is in any layer. Debian's pip reads /etc/ssl/certs/ca-certificates.crt by
#                    itself, so no pip option is needed on the Debian base.
#   --ignorefile     <Dockerfile>.dockerignore, which buildah >= 1.28 also finds by itself as
#                    BuildKit does; named so an older buildah (only <context>/.dockerignore)
#                    does not copy __pycache__ and the like either
#   --force-rm       no working container is left behind when a step fails
app_build() {  # app_build NAME DIR
  local name=$1 dir=$2
  bh bud --pull=never --network host --force-rm --layers=false \
    -v /etc/ssl/certs:/etc/ssl/certs:ro \
    --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
    --ignorefile "$repo/$dir/Dockerfile.dockerignore" \
    -f "$repo/$dir/Dockerfile" -t "localhost/$name:dev" "$repo" >&2
}

pause_build() {
  # Context: a directory with the binary alone (the bin dir holds the whole control plane).
  local ctx=$work/pause
  mkdir -p "$ctx"
  cp "$pause_bin" "$ctx/pause"
  bh bud --pull=never --layers=false --force-rm -f "$pause_containerfile" \
    -t localhost/modelroll-pause:dev "$ctx" >&2
}

export_archive() {  # export_archive NAME: push to a temporary name, rename, drop older hashes
  local name=$1 dest=${archive[$1]} f
  local tmp=$work/$name.oci.tar
  bh push --quiet "localhost/$name:dev" "oci-archive:$tmp:localhost/$name:dev"
  mv -f "$tmp" "$dest"
  for f in "$images_dir/$name"-*.oci.tar; do
    [ "$f" = "$dest" ] || rm -f "$f"
  done
  log "$name: $dest ($(du -h "$dest" | cut -f1))"
}

need_base=""
for name in "${missing[@]}"; do
  [ "$name" = modelroll-pause ] || need_base=1
done
if [ -n "$need_base" ]; then
  # The store's base is reused while it was made from this recipe's rootfs; the tarball is
  # only needed (and only made) when the base image has to be (re)built.
  step="check base image"
  have=$(bh inspect --type image --format '{{index .OCIv1.Config.Labels "io.modelroll.rootfs"}}' \
    "$BASE_IMAGE" 2>/dev/null || true)
  if [ "$have" != "$base_key" ]; then
    if [ ! -f "$rootfs_tar" ]; then
      timed "debootstrap $SUITE rootfs" make_rootfs
    fi
    timed "base image $BASE_IMAGE" make_base_image
  fi
fi

for name in "${missing[@]}"; do
  case $name in
    modelroll-pause) timed "build $name" pause_build ;;
    modelroll-server) timed "build $name" app_build "$name" server_image ;;
    modelroll-operator) timed "build $name" app_build "$name" operator ;;
  esac
  timed "export $name" export_archive "$name"
done

# Rebuilt images leave their predecessors untagged in the store: drop them (the base stays,
# it is tagged).
step="prune store"
bh rmi --prune >/dev/null 2>&1 || true
log "cache: $images_dir ($(du -sh "$images_dir" | cut -f1)), store $store ($(du -sh "$store" | cut -f1))"
print_archives
