# Jaeger v2 built from Go modules. Source it after common.sh; `jaeger_bin` prints the binary path.
# shellcheck shell=bash

# Jaeger tags every release twice: v2.x.y (the product) and v1.N.0 (the Go module, whose path has no
# /v2 suffix, so only the v1 tags are valid module versions). v1.76.0 is the Jaeger v2.13.0 release
# (cmd/jaeger is the v2 binary); its go.mod says `go 1.24.6`, which the machine's Go satisfies.
JAEGER_MODULE=github.com/jaegertracing/jaeger
JAEGER_MODULE_VERSION="${JAEGER_MODULE_VERSION:-v1.76.0}"
JAEGER_RELEASE="${JAEGER_RELEASE:-v2.13.0}"

# jaeger_bin: builds cmd/jaeger once per (module version, Go version) into $PAYPLANE_CACHE and prints
# the binary's path. `go install pkg@version` refuses this module because its go.mod has a replace
# directive (Shopify/sarama), so we build it from a throw-away wrapper module that requires Jaeger at
# the pinned version and carries the same replace directives: the resolved dependency versions are
# then the ones Jaeger itself builds with. The wrapper's go.sum starts as Jaeger's own go.sum, so every
# dependency is checked against the hashes Jaeger pinned (the checksum database is not reachable for
# all of them from here).
jaeger_bin() {
  local gover; gover=$(go env GOVERSION 2>/dev/null) || die "go is not installed (needed to build Jaeger)"
  local dir="$PAYPLANE_CACHE/go/jaeger-$JAEGER_MODULE_VERSION-$gover"
  if [ -f "$dir/.complete" ] && [ -x "$dir/bin/jaeger" ]; then echo "$dir/bin/jaeger"; return 0; fi

  log "building Jaeger $JAEGER_RELEASE ($JAEGER_MODULE@$JAEGER_MODULE_VERSION) with $gover (cached in $dir)"
  local start=$SECONDS info src
  info=$(GOTOOLCHAIN=local go mod download -json "$JAEGER_MODULE@$JAEGER_MODULE_VERSION") \
    || die "could not download $JAEGER_MODULE@$JAEGER_MODULE_VERSION from the Go module proxy"
  src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$info")
  [ -f "$src/go.mod" ] && [ -f "$src/go.sum" ] || die "no go.mod/go.sum in the downloaded Jaeger module ($src)"

  rm -rf "$dir" && mkdir -p "$dir/wrapper" "$dir/bin"
  {
    echo "module payplane.invalid/jaeger-build"
    grep -m1 '^go ' "$src/go.mod"
    # Single-line `replace a => b v` directives and `replace ( ... )` blocks, copied verbatim.
    awk '/^replace \($/ {blk=1} blk {print} blk && /^\)$/ {blk=0; next} /^replace [^(]/ {print}' "$src/go.mod"
  } >"$dir/wrapper/go.mod"
  cp "$src/go.sum" "$dir/wrapper/go.sum" && chmod u+w "$dir/wrapper/go.sum"

  # GOTOOLCHAIN=local: build with the machine's Go, never a downloaded toolchain (Jaeger's go.mod
  # has a `toolchain` line that we ignore). nice: others compile on the same cores.
  ( cd "$dir/wrapper" \
    && GOTOOLCHAIN=local go get -tool "$JAEGER_MODULE/cmd/jaeger@$JAEGER_MODULE_VERSION" \
    && GOTOOLCHAIN=local CGO_ENABLED=0 nice -n 10 go build -trimpath \
         -ldflags="-s -w -X $JAEGER_MODULE/internal/version.latestVersion=$JAEGER_RELEASE" \
         -o "$dir/bin/jaeger" "$JAEGER_MODULE/cmd/jaeger" ) >&2 \
    || die "building Jaeger $JAEGER_RELEASE failed"
  touch "$dir/.complete"
  log "built Jaeger $JAEGER_RELEASE in $((SECONDS - start)) s"
  echo "$dir/bin/jaeger"
}
