#!/usr/bin/env bash
# Builds the Debian package: $CARGO_TARGET_DIR/debian/callmask_<version>_amd64.deb.
#
#   scripts/build_deb.sh            # after scripts/setup.sh (as root) and a release build
#
# Contents (every file root-owned, nothing world-writable, no path under /usr/local or
# /var/tmp):
#   /usr/bin/callmask                        the release binary, RUNPATH set to /usr/lib/callmask
#   /usr/lib/callmask/                       CTranslate2 + its OpenMP runtime (from the
#                                            ctranslate2 wheel setup_asr.sh installed)
#   /usr/share/callmask/models/whisper-tiny.en/   the default speech model
#   /lib/systemd/system/callmask.service     deploy/systemd/callmask.service, ExecStart -> /usr/bin
#   /etc/callmask/callmask.toml              deploy/debian/callmask.toml (a conffile)
#   /usr/share/doc/callmask/                 README, copyright, the reference config, the
#                                            Grafana dashboard and Prometheus alert rules
# Maintainer scripts (deploy/debian/): postinst creates the `callmask` system user and
# /var/lib/callmask/recordings (0750), gives /etc/callmask to group callmask, enables the
# unit when systemd runs; prerm stops and disables it; postrm purge removes empty folders.
#
# Env: CARGO_TARGET_DIR (default /var/tmp/callmask-target), CALLMASK_DEB_BIN (default: the
# release build there; built if missing), CALLMASK_DEB_LIB_DIR (default /usr/local/lib/callmask),
# CALLMASK_DEB_MODEL_DIR (default /var/lib/callmask/models/whisper-tiny.en): where
# setup_asr.sh installed the engine library and the model. Prints the .deb's path.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/callmask-target}
LIB_SRC=${CALLMASK_DEB_LIB_DIR:-/usr/local/lib/callmask}
MODEL_SRC=${CALLMASK_DEB_MODEL_DIR:-/var/lib/callmask/models/whisper-tiny.en}
die() { echo "build-deb: $*" >&2; exit 1; }

for tool in dpkg-deb patchelf strip; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install dpkg-dev patchelf binutils; scripts/setup.sh installs them)"
done
ls "$LIB_SRC"/libctranslate2-*.so.* >/dev/null 2>&1 \
  || die "no libctranslate2 in $LIB_SRC: run scripts/setup.sh as root first (or set CALLMASK_DEB_LIB_DIR)"
for f in model.bin config.json tokenizer.json vocabulary.txt; do
  [ -f "$MODEL_SRC/$f" ] || die "$MODEL_SRC/$f missing: run scripts/setup.sh as root first (or set CALLMASK_DEB_MODEL_DIR)"
done
if [ -z "${CALLMASK_DEB_BIN:-}" ]; then
  cargo build --release --locked -q -p callmask
  CALLMASK_DEB_BIN="$CARGO_TARGET_DIR/release/callmask"
fi
[ -x "$CALLMASK_DEB_BIN" ] || die "$CALLMASK_DEB_BIN is not an executable"

VERSION=$("$CALLMASK_DEB_BIN" --version | awk '{print $2}')
[ -n "$VERSION" ] || die "could not read the version from $CALLMASK_DEB_BIN --version"
OUT="$CARGO_TARGET_DIR/debian"
ROOT="$OUT/callmask_${VERSION}_amd64"
DEB="$OUT/callmask_${VERSION}_amd64.deb"
rm -rf "$ROOT" "$DEB"
umask 022
mkdir -p "$ROOT/DEBIAN" "$ROOT/usr/bin" "$ROOT/usr/lib/callmask" \
  "$ROOT/usr/share/callmask/models/whisper-tiny.en" "$ROOT/lib/systemd/system" \
  "$ROOT/etc/callmask" "$ROOT/usr/share/doc/callmask/examples"

# The binary looks for the engine library in the package's folder only.
install -m 0755 "$CALLMASK_DEB_BIN" "$ROOT/usr/bin/callmask"
strip --strip-debug "$ROOT/usr/bin/callmask"
patchelf --set-rpath /usr/lib/callmask "$ROOT/usr/bin/callmask"
for so in "$LIB_SRC"/libctranslate2-*.so.* "$LIB_SRC"/libgomp-*.so.*; do
  [ -f "$so" ] && install -m 0644 "$so" "$ROOT/usr/lib/callmask/"
done
for f in model.bin config.json tokenizer.json vocabulary.txt; do
  install -m 0644 "$MODEL_SRC/$f" "$ROOT/usr/share/callmask/models/whisper-tiny.en/$f"
done
sed -e 's#/usr/local/bin/callmask#/usr/bin/callmask#g' \
    -e 's#^\#   install -m 0755 target/release/callmask .*#\#   (installed by the callmask package)#' \
    deploy/systemd/callmask.service >"$ROOT/lib/systemd/system/callmask.service"
chmod 0644 "$ROOT/lib/systemd/system/callmask.service"
install -m 0644 deploy/debian/callmask.toml "$ROOT/etc/callmask/callmask.toml"
install -m 0644 README.md "$ROOT/usr/share/doc/callmask/README.md"
install -m 0644 deploy/debian/copyright "$ROOT/usr/share/doc/callmask/copyright"
install -m 0644 examples/callmask.toml deploy/grafana/callmask.json deploy/prometheus/alerts.yml \
  deploy/prometheus/prometheus.yml "$ROOT/usr/share/doc/callmask/examples/"

SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@SIZE@/$SIZE/" deploy/debian/control.in >"$ROOT/DEBIAN/control"
echo /etc/callmask/callmask.toml >"$ROOT/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "deploy/debian/$s" "$ROOT/DEBIAN/$s"; done
(cd "$ROOT" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) \
  >"$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/md5sums" "$ROOT/DEBIAN/control" "$ROOT/DEBIAN/conffiles"

# gzip -6: xz would save ~20 % of ~100 MB but take minutes on one core.
dpkg-deb --root-owner-group -Zgzip -z6 --build "$ROOT" "$DEB" >/dev/null
rm -rf "$ROOT"
echo "$DEB"
