/*
 * The `stdout` sink, for debugging: writes each event to standard output as the file sink would (an NDJSON
 * envelope or the raw payload, one line each), one write per batch of events. A blocked pipe blocks the
 * sink, which is backpressure like any slow sink; a closed one (EPIPE) is an error: the instance crashes
 * and its events are delivered again to its successor.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sinks/file/file_int.h"

typedef struct sl_stdout_s {
    sl_file_format_t fmt;
    sl_buf_t buf;
} sl_stdout_t;

static int sl__stdout_init(sl_ctx_t *ctx, void **state)
{
    sl_stdout_t *so = calloc(1, sizeof *so);
    if (so == NULL)
        return SL_ENOMEM;
    so->fmt = strcmp(sl_conf_str(sl_ctx_node(ctx), "format"), "raw") == 0 ? SL_FILE_FMT_RAW : SL_FILE_FMT_NDJSON;
    *state = so;
    return 0;
}

static int sl__stdout_events(sl_ctx_t *ctx, void *state, const sl_event_t *evs, size_t n)
{
    sl_stdout_t *so = state;
    so->buf.len = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = sl__file_encode(&so->buf, so->fmt, &evs[i]);
        if (rc != 0)
            return rc;
    }
    for (size_t o = 0; o < so->buf.len;) {
        ssize_t w = write(STDOUT_FILENO, so->buf.p + o, so->buf.len - o);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            sl_log(SL_LOG_ERROR, sl_ctx_name(ctx), -errno, "write(stdout, %zu) failed", so->buf.len - o);
            return -errno;
        }
        o += (size_t)w;
    }
    return 0;
}

static void sl__stdout_terminate(sl_ctx_t *ctx, void *state, int reason)
{
    sl_stdout_t *so = state;
    if (so == NULL)
        return;
    sl__buf_free(&so->buf);
    free(so);
}

const sl_stage_ops_t sl_sink_stdout_ops = {
    .type = "stdout",
    .kind = SL_KIND_CONSUMER,
    .init = sl__stdout_init,
    .handle_events = sl__stdout_events,
    .terminate = sl__stdout_terminate,
};
