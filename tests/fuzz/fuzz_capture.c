/*
 * libFuzzer target for the capture readers: arbitrary bytes (gzip or not, any of the three formats) through
 * sl_cap_reader_open_fd() and every record, twice (the second pass after a rewind), checking what a record
 * view promises: its parts lie inside what the reader returned, corrupt records are counted, the counters
 * add up. The bytes also go to the RFC 3339 parser. Built and run by run_capture_fuzz.sh.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ingest/capture/capture_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void sl__fz_pass(sl_cap_reader_t *rd, uint64_t *good, uint64_t *bad)
{
    sl_cap_rec_t r;
    int rc;
    uint64_t last = 0;
    bool first = true;
    while ((rc = sl_cap_reader_next(rd, &r)) == 0 || rc == SL_EBADMSG) {
        if (rc == SL_EBADMSG) {
            (*bad)++;
            continue;
        }
        if (r.topic_len == 0 || r.qos > 2 || (!first && r.index <= last))
            abort(); /* an empty topic, a bad QoS or indexes that do not grow */
        first = false;
        last = r.index;
        volatile uint8_t sink = 0; /* touch every byte: ASan sees a view that points outside */
        for (uint32_t i = 0; i < r.topic_len; i++)
            sink ^= (uint8_t)r.topic[i];
        for (uint32_t i = 0; i < r.props_len; i++)
            sink ^= r.props[i];
        for (uint32_t i = 0; i < r.payload_len; i++)
            sink ^= r.payload[i];
        (void)sink;
        (*good)++;
    }
    if (rc != SL_EOF && rc != SL_EIO)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size || lseek(fd, 0, SEEK_SET) != 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    sl_cap_reader_t *rd;
    if (sl_cap_reader_open_fd(fd, "fuzz", &rd) == 0) {
        uint64_t good = 0, bad = 0, good2 = 0, bad2 = 0;
        sl__fz_pass(rd, &good, &bad);
        const sl_cap_info_t *in = sl_cap_reader_info(rd);
        if (in->records != good)
            abort();
        if (sl_cap_reader_rewind(rd) == 0) {
            sl__fz_pass(rd, &good2, &bad2);
            if (!in->gzip && (good2 != good || bad2 != bad))
                abort(); /* a plain file reads the same twice */
        }
        sl_cap_reader_destroy(rd);
    }
    uint64_t ns;
    (void)sl__cap_parse_rfc3339((const char *)data, size, &ns);
    return 0;
}
