#!/bin/sh
# Fuzzes the capture readers with libFuzzer for SECONDS (default 60), starting from tests/capture/.
#   tests/fuzz/run_capture_fuzz.sh 60
# Builds with clang (-fsanitize=fuzzer,address,undefined) straight from the readers (ingest/capture/capture.c,
# capture_text.c) and common/sl.c into $BUILD (default /tmp/sluice-fuzz-capture), outside CMake. New inputs that grow coverage go to
# $BUILD/corpus (not committed); a crash leaves $BUILD/crash-* and fails the script: copy it into
# tests/capture/fuzz-regressions/ once fixed, where test_capture reads it on every run.
set -eu
SECONDS_TO_RUN=${1:-60}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-/tmp/sluice-fuzz-capture}
CC=${CC:-clang}
mkdir -p "$BUILD/corpus"
$CC -g -O1 -std=gnu17 -D_GNU_SOURCE -I"$SRC" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -o "$BUILD/fuzz_capture" "$SRC/tests/fuzz/fuzz_capture.c" "$SRC/ingest/capture/capture.c" \
    "$SRC/ingest/capture/capture_text.c" "$SRC/common/sl.c" -lz -lm
for f in "$SRC"/tests/capture/* "$SRC"/tests/capture/fuzz-regressions/*; do
    [ -f "$f" ] && cp "$f" "$BUILD/corpus/seed-$(basename "$f")"
done
cd "$BUILD"
exec ./fuzz_capture -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -dict="$SRC/tests/fuzz/capture.dict" -print_final_stats=1 corpus
