#!/bin/sh
# Fuzzes the config loader with libFuzzer for SECONDS (default 60), starting from the config corpus.
#   tests/fuzz/run_config_fuzz.sh 60
# Builds with clang (-fsanitize=fuzzer,address,undefined) straight from config/*.c and common/sl.c into
# $BUILD (default /tmp/sluice-fuzz), outside CMake, so gcc builds are unaffected. New inputs that grow
# coverage go to $BUILD/corpus (not committed); a crash leaves $BUILD/crash-* and fails the script:
# copy it into tests/config/fuzz-regressions/ once fixed, where test_config loads it on every run.
set -eu
SECONDS_TO_RUN=${1:-60}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-/tmp/sluice-fuzz}
CC=${CC:-clang}
mkdir -p "$BUILD/corpus"
# The schema's checks reach into node types (the file sink's path check), so the target links the whole
# library, like the sluice binary; only the loader is driven.
LIBSRC=$(ls "$SRC"/common/*.c "$SRC"/config/*.c "$SRC"/backpressure/*.c "$SRC"/stages/*.c "$SRC"/ingest/*.c \
         "$SRC"/ingest/*/*.c "$SRC"/sinks/*.c "$SRC"/sinks/*/*.c)
$CC -g -O1 -std=gnu17 -D_GNU_SOURCE -mcx16 -I"$SRC" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -o "$BUILD/fuzz_config" "$SRC/tests/fuzz/fuzz_config.c" $LIBSRC \
    $(pkg-config --cflags --libs yaml-0.1 yajl libzstd zlib) -lpaho-mqtt3as -lrdkafka -lpthread -lm
# Seeds: every config we have, good and bad.
for f in "$SRC"/tests/config/good/*.yaml "$SRC"/tests/config/bad/*.yaml "$SRC"/examples/*.yaml \
         "$SRC"/tests/config/fuzz-regressions/*; do
    [ -f "$f" ] && cp "$f" "$BUILD/corpus/seed-$(basename "$f")"
done
cd "$BUILD"
exec ./fuzz_config -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -dict="$SRC/tests/fuzz/config.dict" -print_final_stats=1 corpus
