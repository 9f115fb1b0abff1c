# Sourced by the speech evaluations (eval_speech.sh, eval_human_speech.sh): loads the speech
# engine's environment (scripts/setup_asr.sh writes it) and builds `callmask` with the embedded
# recognizer; leaves its path in BIN. Expects CARGO_TARGET_DIR and the repo root as cwd.
ASR_ENV=${ASR_ENV:-${CALLMASK_ASR_ROOT:-/var/tmp/callmask-asr}/env.sh}
[ -f "$ASR_ENV" ] || { echo "$(basename "$0" .sh): $ASR_ENV missing: run scripts/setup_asr.sh" >&2; exit 1; }
# shellcheck disable=SC1090
source "$ASR_ENV"
# The binary finds libctranslate2 through its rpath, the root-owned /usr/local/lib/callmask
# (asr/build.rs, proxy/build.rs); nothing is loaded from /var/tmp (issue 13).
cargo build --release -q -p callmask --features whisper
BIN="$CARGO_TARGET_DIR/release/callmask"
