#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (issue 13): proxy/fuzz (sip_message,
# tcp_framing, sdp, rtp_header = RTP + RTCP, ng, config) and dsp/fuzz (rfc4733,
# mask_pipeline: no sample inside a marked span leaves unmasked). Each starts from its
# checked-in seeds (<crate>/fuzz/seeds/<target>/) and a scratch corpus under /tmp, so the
# clone stays clean; a crash fails the run and leaves its input in
# /tmp/callmask-fuzz/artifacts/<target>/ with the fuzzer's log.
#
#   scripts/fuzz.sh                    # FUZZ_SECONDS (default 15) per target
#   FUZZ_SECONDS=600 scripts/fuzz.sh   # longer runs (not CI)
#   scripts/fuzz.sh sdp ng             # only these targets
#
# Needs the nightly toolchain (rustup) and cargo-fuzz (installed from crates.io when missing).
# Builds go to $CALLMASK_FUZZ_TARGET (default /var/tmp/callmask-fuzz-target): libFuzzer,
# callmask without the speech engine. FUZZ_SANITIZER (default none: the fuzzed code is safe
# Rust, and the build is minutes shorter) may be address, memory, thread or leak.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
SECONDS_EACH=${FUZZ_SECONDS:-15}
SANITIZER=${FUZZ_SANITIZER:-none}
# --release (optimised, debug assertions on): ~20x the executions of --dev in the same
# seconds, for ~2 min more build (proxy: 286 s vs 152 s, one measurement on this 2-core VM).
# FUZZ_DEV=1 builds unoptimised.
PROFILE=--release
[ -n "${FUZZ_DEV:-}" ] && PROFILE=--dev
OUT=/tmp/callmask-fuzz
TARGET_DIR=${CALLMASK_FUZZ_TARGET:-/var/tmp/callmask-fuzz-target}
fail_or_skip() {
  if [ "${CALLMASK_ALLOW_SKIP:-0}" = 1 ]; then echo "fuzz: SKIP: $*"; exit 0; fi
  echo "fuzz: $* (CALLMASK_ALLOW_SKIP=1 to skip)" >&2; exit 1
}
rustup run nightly rustc --version >/dev/null 2>&1 || fail_or_skip "no nightly toolchain (rustup toolchain install nightly)"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (crates.io)"
  CARGO_TARGET_DIR="$TARGET_DIR/cargo-fuzz" cargo install cargo-fuzz --locked -q
fi
mkdir -p "$OUT"
declare -A CRATE=([sip_message]=proxy [tcp_framing]=proxy [sdp]=proxy [rtp_header]=proxy
  [ng]=proxy [config]=proxy [rfc4733]=dsp [mask_pipeline]=dsp)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(sip_message tcp_framing sdp rtp_header ng config rfc4733 mask_pipeline)
pass=0 fail=0
for t in "${TARGETS[@]}"; do
  crate=${CRATE[$t]:-}
  [ -n "$crate" ] || { echo "fuzz: no target $t" >&2; exit 2; }
  seeds="$REPO/$crate/fuzz/seeds/$t"
  [ -d "$seeds" ] || { echo "fuzz: no seeds for $t ($seeds)" >&2; exit 2; }
  corpus="$OUT/corpus/$t"
  mkdir -p "$corpus" "$OUT/artifacts/$t"
  log="$OUT/$t.log"
  start=$(date +%s)
  if (cd "$REPO/$crate" && cargo +nightly fuzz run -s "$SANITIZER" "$PROFILE" --target-dir "$TARGET_DIR/$crate-$SANITIZER$PROFILE" "$t" \
        "$corpus" "$seeds" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 \
        -artifact_prefix="$OUT/artifacts/$t/" >"$log" 2>&1); then
    runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -1 | awk '{print $2}')
    echo "fuzz: ok   $t: ${runs:-?} runs in ${SECONDS_EACH} s (build + run $(( $(date +%s) - start )) s)"
    pass=$((pass + 1))
  else
    echo "fuzz: FAIL $t (log: $log; inputs: $OUT/artifacts/$t/)"
    tail -30 "$log" | sed 's/^/  /'
    fail=$((fail + 1))
  fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" = 0 ]
