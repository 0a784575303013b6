# Tools the tests need beyond the machine's Rust and Go, installed from package registries and
# cached under $PAYPLANE_CACHE. Source after common.sh.
# shellcheck shell=bash

BUF_VERSION=1.75.0

buf_bin() {
  local dir="$PAYPLANE_CACHE/npm/buf-$BUF_VERSION"
  if [ ! -x "$dir/node_modules/.bin/buf" ]; then
    log "installing buf $BUF_VERSION from the npm registry"
    mkdir -p "$dir"
    npm install --silent --no-audit --no-fund --prefix "$dir" "@bufbuild/buf@$BUF_VERSION" >&2 \
      || die "npm install @bufbuild/buf@$BUF_VERSION failed"
  fi
  echo "$dir/node_modules/.bin/buf"
}

run_buf_lint() {
  local buf; buf=$(buf_bin)
  (cd "$PAYPLANE_ROOT/proto" && "$buf" lint)
}

install_test_tools() {
  command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first"
  command -v go >/dev/null || die "go not found: Go 1.26 is needed to build Jaeger and the local cloud"
  command -v npm >/dev/null || die "npm not found: Node.js is needed to install buf"
  # chromium: the CLI's HTML report is checked in a headless browser.
  apt_install curl ca-certificates chromium
  buf_bin >/dev/null
}
