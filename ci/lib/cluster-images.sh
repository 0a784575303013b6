# Container images built locally with buildah `from scratch` (no daemon, nothing pulled).
# Archives are cached under $PAYPLANE_CACHE/images keyed by content version. Sourced by ci/cluster.
# shellcheck shell=bash

IMAGE_CACHE="$PAYPLANE_CACHE/images"
PAUSE_IMAGE="localhost/payplane/pause:1.0"
BUSYBOX_IMAGE="localhost/payplane/busybox:1.0"

# buildah with private storage under the cluster state (vfs: no mounts are left behind).
bah() {
  buildah --root "$CS/buildah/root" --runroot "$CS/buildah/run" --storage-driver vfs "$@"
}

# _image_archive NAME REF BUILD_FN: builds REF with BUILD_FN CONTAINER (a function that copies files
# and sets config) into $IMAGE_CACHE/NAME.tar unless cached. Prints the archive path.
_image_archive() {
  local name=$1 ref=$2 fn=$3 out="$IMAGE_CACHE/$1.tar"
  if [ -f "$out" ]; then echo "$out"; return 0; fi
  mkdir -p "$IMAGE_CACHE"
  local c; c=$(bah from scratch) || die "buildah: from scratch failed (image $ref)"
  "$fn" "$c" || die "buildah: building $ref failed"
  bah commit -q "$c" "$ref" >/dev/null || die "buildah: commit $ref failed"
  bah rm "$c" >/dev/null
  bah push -q "$ref" "oci-archive:$out.tmp:$ref" >/dev/null 2>&1 || die "buildah: exporting $ref failed"
  mv "$out.tmp" "$out"
  echo "$out"
}

# --- pause: a static C program (terminates on INT/TERM, reaps children) -------------------------
_pause_files() {
  local c=$1 d="$CS/buildah/pause"
  mkdir -p "$d"
  cat >"$d/pause.c" <<'EOF'
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void die(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction a = {0}, r = {0};
  a.sa_handler = die; sigaction(SIGINT, &a, NULL); sigaction(SIGTERM, &a, NULL);
  r.sa_handler = reap; r.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &r, NULL);
  for (;;) pause();
}
EOF
  gcc -static -Os -s -o "$d/pause" "$d/pause.c" || return 1
  bah copy "$c" "$d/pause" /pause >/dev/null
  bah config --entrypoint '["/pause"]' --user 65535:65535 "$c"
}
pause_archive() { _image_archive "pause-1.0" "$PAUSE_IMAGE" _pause_files; }

# --- busybox: Debian's busybox-static with its applet links ----------------------------------------
_busybox_files() {
  local c=$1 r="$CS/buildah/busybox-root" a
  rm -rf "$r"; mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/www"
  cp /bin/busybox "$r/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  chmod 1777 "$r/tmp"
  bah copy "$c" "$r" / >/dev/null
  bah config --cmd '["/bin/sh"]' --env PATH=/bin "$c"
}
busybox_archive() {
  local v; v=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null | tr -c 'a-zA-Z0-9.\n' '_')
  _image_archive "busybox-$v" "$BUSYBOX_IMAGE" _busybox_files
}

# --- coredns: the slim binary built by build_coredns ----------------------------------------------
COREDNS_IMAGE="localhost/payplane/coredns:${COREDNS_VERSION#v}"
_coredns_files() {
  local c=$1
  bah copy "$c" "$COREDNS_BIN/coredns" /coredns >/dev/null
  bah config --entrypoint '["/coredns"]' "$c"
}
coredns_archive() { _image_archive "coredns-$COREDNS_VERSION-slim-$(_gover)" "$COREDNS_IMAGE" _coredns_files; }

# --- jaeger: the binary from ci/lib/jaeger.sh's jaeger_bin ----------------------------------------
_jaeger_files() {
  local c=$1
  bah copy "$c" "$JAEGER_BINARY" /jaeger >/dev/null
  mkdir -p "$CS/buildah/jaeger-tmp" && chmod 1777 "$CS/buildah/jaeger-tmp"
  bah copy "$c" "$CS/buildah/jaeger-tmp" /tmp >/dev/null
  bah config --entrypoint '["/jaeger"]' "$c"
}
jaeger_archive() {
  local sum; sum=$(sha256sum "$JAEGER_BINARY" | cut -c1-12)
  JAEGER_IMAGE="localhost/payplane/jaeger:$sum"
  _image_archive "jaeger-$sum" "$JAEGER_IMAGE" _jaeger_files
}

# --- metrics-server: the binary built by build_metrics_server --------------------------------------
METRICS_SERVER_IMAGE="localhost/payplane/metrics-server:${METRICS_SERVER_VERSION#v}"
_metrics_server_files() {
  local c=$1
  bah copy "$c" "$METRICS_SERVER_BIN/metrics-server" /metrics-server >/dev/null
  bah config --entrypoint '["/metrics-server"]' --user 65534:65534 "$c"
}
metrics_server_archive() {
  _image_archive "metrics-server-$METRICS_SERVER_VERSION-$(_gover)" "$METRICS_SERVER_IMAGE" _metrics_server_files
}

# import_archive ARCHIVE: into containerd's k8s.io namespace (the CRI's).
import_archive() {
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$1" >/dev/null 2>>"$CLUSTER_LOGS/images.log" \
    || die "images: importing $1 into containerd failed (log: $CLUSTER_LOGS/images.log)"
}
