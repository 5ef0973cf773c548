#!/usr/bin/env bash
# Builds attestd release binaries for Linux (glibc) and packs each with the
# example configuration and the systemd files:
#
#   deploy/release/build.sh [x86_64|aarch64|all]      (default: all)
#
# Output in dist/: attestd-<version>-<target>.tar.gz and SHA256SUMS.
# x86_64 builds with the host toolchain. aarch64 cross-compiles with
# Debian's cross gcc (the linker, and the C compiler for ring and mimalloc)
# and rustup's aarch64 standard library; see deploy/release/README.md.
# CARGO_TARGET_DIR and CARGO_BUILD_JOBS are honoured.
set -euo pipefail

cd "$(dirname "$0")/../.."
which_targets=${1:-all}
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "build.sh: no [workspace.package] version in Cargo.toml" >&2; exit 1; }
target_dir=${CARGO_TARGET_DIR:-target}
dist=dist
mkdir -p "$dist"

die() { echo "build.sh: $*" >&2; exit 1; }

# The newest glibc symbol version a binary needs: the oldest glibc it runs on.
glibc_floor() {
  if command -v objdump >/dev/null 2>&1; then
    objdump -T "$1" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1
  else
    echo "unknown (objdump not installed)"
  fi
}

build() {
  local arch=$1 triple=$2
  echo "== attestd $version for $triple"
  cargo build --release --locked --target "$triple" -p attestd --bin attestd
  local name="attestd-$version-$triple"
  local stage="$dist/$name"
  rm -rf "$stage"
  mkdir -p "$stage/systemd"
  install -m 0755 "$target_dir/$triple/release/attestd" "$stage/attestd"
  install -m 0644 README.md deploy/attestd.example.toml deploy/attestd.postgres.example.toml "$stage/"
  install -m 0644 deploy/systemd/attestd.service deploy/systemd/attestd.sysusers \
    deploy/systemd/README.md "$stage/systemd/"
  tar -C "$dist" --owner=0 --group=0 --numeric-owner -czf "$dist/$name.tar.gz" "$name"
  rm -rf "$stage"
  echo "   $dist/$name.tar.gz ($arch, needs $(glibc_floor "$target_dir/$triple/release/attestd") or newer)"
}

build_x86_64() {
  build x86_64 x86_64-unknown-linux-gnu
}

build_aarch64() {
  local triple=aarch64-unknown-linux-gnu
  command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 ||
    die "aarch64-linux-gnu-gcc not found: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
  if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed | grep -qx "$triple" ||
      die "no Rust standard library for $triple: rustup target add $triple"
  fi
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
  export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
  build aarch64 "$triple"
}

case "$which_targets" in
  x86_64) build_x86_64 ;;
  aarch64) build_aarch64 ;;
  all) build_x86_64; build_aarch64 ;;
  *) die "unknown target '$which_targets' (x86_64, aarch64 or all)" ;;
esac

(cd "$dist" && sha256sum attestd-"$version"-*.tar.gz > SHA256SUMS)
echo "== $dist/SHA256SUMS"
cat "$dist/SHA256SUMS"
