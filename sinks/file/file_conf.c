/*
 * Setting up a `file` sink instance from its node's keys: the base directory (created if missing, and
 * proved writable by writing the instance's state file, so an unusable directory is "cannot start", not a
 * stream of retries), the path template, the codec, and the recovery of what a predecessor left.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sinks/file/file_int.h"

static int sl__enum_index(const char *const *names, size_t n, const char *v)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], v) == 0)
            return (int)i;
    return 0; /* the schema allows only the listed values */
}

#define SL_X(n, s) s,
static const char *const sl__fmt_names[] = {SL_FILE_FORMAT_MAP(SL_X)};
static const char *const sl__comp_names[] = {SL_FILE_COMP_MAP(SL_X)};
static const char *const sl__sync_names[] = {SL_FILE_SYNC_MAP(SL_X)};
#undef SL_X

/* mkdir -p of an absolute or working-directory-relative path. */
static int sl__mkdir_p(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *s = strchr(tmp + 1, '/'); s != NULL; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -errno : 0;
}

static void sl__fsink_read_conf(sl_fsink_t *fs, const sl_conf_node_t *node)
{
    fs->fmt = (sl_file_format_t)sl__enum_index(sl__fmt_names, SL_ARRAY_LEN(sl__fmt_names), sl_conf_str(node, "format"));
    fs->comp =
        (sl_file_comp_t)sl__enum_index(sl__comp_names, SL_ARRAY_LEN(sl__comp_names), sl_conf_str(node, "compression"));
    fs->sync = (sl_file_sync_t)sl__enum_index(sl__sync_names, SL_ARRAY_LEN(sl__sync_names), sl_conf_str(node, "sync"));
    fs->rotate_size = sl_conf_size(node, "rotate_size");
    fs->rotate_age_ns = sl_conf_duration(node, "rotate_age");
    fs->sync_interval_ns = sl_conf_duration(node, "sync_interval");
    fs->batch_size = (uint64_t)sl_conf_int(node, "batch_size");
    fs->batch_bytes = sl_conf_size(node, "batch_bytes");
    fs->batch_timeout_ns = sl_conf_duration(node, "batch_timeout");
    fs->max_open = (uint32_t)sl_conf_int(node, "max_open_files");
    const char *bk = sl_conf_str(node, "batch_key");
    fs->bkey = bk[0] == '\0'              ? SL_BKEY_NONE
               : strcmp(bk, "key") == 0   ? SL_BKEY_KEY
               : strcmp(bk, "topic") == 0 ? SL_BKEY_TOPIC
                                          : SL_BKEY_ATTR;
    fs->bkey_attr = bk;
    fs->bkey_attr_len = strlen(bk);
    fs->hold_bytes_limit = node->capacity / 2;
}

static void sl__fsink_metrics(sl_ctx_t *ctx, sl_fsink_t *fs)
{
    static const sl_sink_metric_t defs[] = {
        {offsetof(sl_fsink_t, m_blocked_episodes), "file_blocked_episodes_total",
         "Episodes of a failed open, write or sync (disk full, read-only, permissions): held, retried, not lost.",
         SL_METRIC_COUNTER},
        {offsetof(sl_fsink_t, m_blocked_retries), "file_blocked_retries_total",
         "Retries of a blocked write (every 500 ms during an episode).", SL_METRIC_COUNTER},
        {offsetof(sl_fsink_t, m_blocked), "file_blocked", "1 while writing is blocked (backpressure).",
         SL_METRIC_GAUGE},
        {offsetof(sl_fsink_t, m_files), "file_files_completed_total", "Files completed (NAME.part renamed to NAME).",
         SL_METRIC_COUNTER},
        {offsetof(sl_fsink_t, m_dead), "file_dead_lettered_total",
         "Events sent to the dead-letter path (unroutable path, not encodable in the format).", SL_METRIC_COUNTER},
    };
    _Static_assert(SL_ARRAY_LEN(defs) == SL_ARRAY_LEN(fs->m_spare), "a spare word per metric");
    sl__sink_metrics(ctx, fs, defs, SL_ARRAY_LEN(defs), fs->m_spare);
    sl__metric_set(fs->m_blocked, 0); /* a restarted instance starts unblocked */
}

int sl__fsink_setup(sl_ctx_t *ctx, sl_fsink_t *fs)
{
    const sl_conf_node_t *node = sl_ctx_node(ctx);
    sl__fsink_metrics(ctx, fs);
    fs->ctx = ctx;
    fs->who = sl_ctx_name(ctx);
    fs->dirfd = -1;
    fs->pend_free = SL_PEND_NIL;
    sl__fsink_read_conf(fs, node);
    /* The runtime hands the sink at most sl_ctx_hold_limit() unacknowledged events, then waits. Batches
     * spread over many files may never fill before that: past half the window every batch is written, so
     * the sink never sits on a full window until batch_timeout. The input ring bounds what is in flight
     * the same way, in bytes: past half its capacity every batch is written too (hold_bytes_limit). */
    fs->hold_limit = (uint32_t)SL_MIN(sl_ctx_hold_limit(ctx) / 2, (uint64_t)UINT32_MAX);
    const char *why = NULL;
    if (sl__tpl_compile(&fs->tpl, sl_conf_str(node, "path"), &why) != 0) {
        sl_log(SL_LOG_ERROR, fs->who, SL_EINVAL, "path \"%s\": %s", sl_conf_str(node, "path"), why ? why : "");
        return SL_EINVAL;
    }
    fs->tpl_time_only = true;
    for (size_t i = 0; i < fs->tpl.n; i++)
        fs->tpl_time_only =
            fs->tpl_time_only && (fs->tpl.segs[i].kind == SL_TPL_LIT || fs->tpl.segs[i].kind == SL_TPL_TIME);
    fs->dir = strdup(sl_conf_str(node, "dir"));
    fs->files = calloc(fs->max_open, sizeof *fs->files);
    if (fs->dir == NULL || fs->files == NULL)
        return SL_ENOMEM;
    fs->n_files = fs->max_open;
    int rc = sl__mkdir_p(fs->dir);
    if (rc == 0 && (fs->dirfd = open(fs->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        rc = -errno;
    if (rc != 0) {
        sl_log(SL_LOG_ERROR, fs->who, rc, "cannot use the base directory %s", fs->dir);
        return rc;
    }
    if (fs->fmt == SL_FILE_FMT_CAPTURE && fs->comp == SL_FILE_COMP_ZSTD) {
        sl_log(SL_LOG_ERROR, fs->who, SL_EINVAL,
               "format capture takes compression none or gzip (the capture readers read gzip, not zstd)");
        return SL_EINVAL;
    }
    fs->cap_desc = node->name;
    fs->level = (int)sl_conf_int(node, "compression_level");
    /* gzip: one codec for every batch; zstd: the instance's codec checks the level here, each open file has
     * its stream (sl__file_open). */
    if (fs->comp != SL_FILE_COMP_NONE && (rc = sl__codec_new(fs->comp, fs->level, &fs->codec)) != 0) {
        sl_log(SL_LOG_ERROR, fs->who, rc, "cannot set up %s compression", sl__comp_names[fs->comp]);
        return rc;
    }
    snprintf(fs->state_path, sizeof fs->state_path, ".sluice-%s-%u.state", node->name, sl_ctx_instance(ctx));
    sl__file_recover(fs);
    if ((rc = sl__file_state_save(fs)) != 0) {
        sl_log(SL_LOG_ERROR, fs->who, rc, "the base directory %s is not writable", fs->dir);
        return rc;
    }
    fs->next_sync_ns = sl_now_ns() + fs->sync_interval_ns;
    sl_log(SL_LOG_DEBUG, fs->who, 0,
           "dir %s, path %s, %s, %s, sync %s, rotate at %llu bytes or %llu ms, batches (per file%s%s) of %llu "
           "events or %llu bytes or %llu ms, %u files open at most",
           fs->dir, sl_conf_str(node, "path"), sl__fmt_names[fs->fmt], sl__comp_names[fs->comp],
           sl__sync_names[fs->sync], (unsigned long long)fs->rotate_size,
           (unsigned long long)(fs->rotate_age_ns / SL_NS_PER_MS), fs->bkey == SL_BKEY_NONE ? "" : " and ",
           fs->bkey == SL_BKEY_NONE ? "" : fs->bkey_attr, (unsigned long long)fs->batch_size,
           (unsigned long long)fs->batch_bytes, (unsigned long long)(fs->batch_timeout_ns / SL_NS_PER_MS),
           fs->max_open);
    return 0;
}

void sl__fsink_free(sl_fsink_t *fs)
{
    if (fs == NULL)
        return;
    for (uint32_t i = 0; fs->files && i < fs->n_files; i++)
        if (fs->files[i].in_use && fs->files[i].fd >= 0) {
            close(fs->files[i].fd); /* left as .part: the state file names it for the next start */
            sl__codec_destroy(fs->files[i].zs);
        }
    if (fs->dirfd >= 0)
        close(fs->dirfd);
    sl__tpl_free(&fs->tpl);
    sl__codec_destroy(fs->codec);
    sl__buf_free(&fs->enc);
    sl__buf_free(&fs->out);
    sl__fbatch_free(fs);
    free(fs->files);
    free(fs->pend);
    free(fs->dir);
    free(fs);
}

int sl_sink_file_path_check(const char *text, const char **why)
{
    sl_tpl_t tpl;
    int rc = sl__tpl_compile(&tpl, text, why);
    if (rc == 0)
        sl__tpl_free(&tpl);
    return rc;
}
