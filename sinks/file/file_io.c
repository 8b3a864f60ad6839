/*
 * Files of the file sink on disk: naming, opening NAME.part, writing a batch at the file's end, the
 * rename that publishes a complete file, and the recovery of the .part files a crashed predecessor left.
 *
 * Every path is relative to the base directory's descriptor (openat and friends), so nothing here can
 * be redirected outside it by the expanded template. Names are unique per instance: the instance number
 * and a counter go between the stem and the extensions ("13.ndjson.gz" -> "13-0-4.ndjson.gz"), and a
 * name whose .part or final file exists already is skipped, so two instances, or an instance and its
 * restarted successor, never share a file.
 *
 * A failed write is cut back to the file's previous end before it returns, so the file stays a sequence
 * of complete batches; the caller treats the failure as backpressure and retries the same batch later.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sinks/file/file_int.h"

/* Creates the parent directories of rel under the base directory. */
static int sl__mkdirs(int dirfd, const char *rel)
{
    char tmp[SL_FILE_PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s", rel);
    for (char *s = strchr(tmp, '/'); s != NULL; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdirat(dirfd, tmp, 0755) != 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    return 0;
}

/* "a/b/13.ndjson.gz" + (0, 4) -> "a/b/13-0-4.ndjson.gz" */
static void sl__file_name(const sl_file_t *f, uint32_t inst, uint32_t seq, char *out, size_t cap)
{
    const char *base = strrchr(f->rel, '/');
    base = base ? base + 1 : f->rel;
    const char *dot = strchr(base, '.');
    size_t stem = dot ? (size_t)(dot - f->rel) : f->rel_len;
    snprintf(out, cap, "%.*s-%u-%u%s", (int)stem, f->rel, inst, seq, dot ? dot : "");
}

int sl__file_open(sl_fsink_t *fs, sl_file_t *f)
{
    int rc = sl__mkdirs(fs->dirfd, f->rel);
    if (rc != 0)
        return rc;
    char part[sizeof f->final + 8];
    for (uint32_t tries = 0; tries < (1u << 20); tries++, fs->seq++) {
        sl__file_name(f, sl_ctx_instance(fs->ctx), fs->seq, f->final, sizeof f->final);
        snprintf(part, sizeof part, "%s.part", f->final);
        if (faccessat(fs->dirfd, f->final, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
            continue;
        /* Read and write: sealing a zstd frame reads its header back (sl__zstd_seal). */
        int fd = openat(fs->dirfd, part, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0)
            return -errno;
        f->frame_start = UINT64_MAX;
        f->zs_broken = false;
        fs->seq++;
        f->fd = fd;
        f->size = 0;
        f->opened_ns = sl_now_ns();
        return sl__file_state_save(fs);
    }
    return SL_EEXIST;
}

int sl__file_write(sl_fsink_t *fs, sl_file_t *f, const uint8_t *data, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(f->fd, data + done, n - done, (off_t)(f->size + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int err = w < 0 ? -errno : SL_EIO;
            /* Cut back to the last complete batch: the file stays readable and the space is given back. */
            if (ftruncate(f->fd, (off_t)f->size) != 0)
                sl_log(SL_LOG_WARN, fs->who, -errno, "ftruncate(%s.part, %llu) failed", f->final,
                       (unsigned long long)f->size);
            return err;
        }
        done += (size_t)w;
    }
    f->size += n;
    return 0;
}

/* fsync of the directory holding rel, so a rename survives a power cut. */
static void sl__sync_parent(sl_fsink_t *fs, const char *rel)
{
    char tmp[SL_FILE_PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s", rel);
    char *slash = strrchr(tmp, '/');
    int fd = slash ? (*slash = '\0', openat(fs->dirfd, tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC))
                   : openat(fs->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int sl__file_finish(sl_fsink_t *fs, sl_file_t *f)
{
    if (f->fd < 0)
        return 0;
    char part[sizeof f->final + 8];
    snprintf(part, sizeof part, "%s.part", f->final);
    int rc = 0;
    if (fs->sync != SL_FILE_SYNC_NONE && f->size > 0 && fdatasync(f->fd) != 0)
        rc = -errno;
    close(f->fd);
    f->fd = -1;
    if (f->zs != NULL) {
        sl__codec_destroy(f->zs);
        f->zs = NULL;
        fs->n_zs--;
    }
    if (rc == 0 && f->size == 0) {
        unlinkat(fs->dirfd, part, 0);
    } else if (rc == 0 && renameat(fs->dirfd, part, fs->dirfd, f->final) != 0) {
        rc = -errno;
    } else if (rc == 0) {
        fs->files_done++;
        sl__metric_add(fs->m_files, 1);
        if (fs->sync != SL_FILE_SYNC_NONE)
            sl__sync_parent(fs, f->final);
    }
    if (rc != 0)
        sl_log(SL_LOG_ERROR, fs->who, rc, "cannot complete %s (left as %s.part; the next start renames it)", f->final,
               f->final);
    sl__file_state_save(fs);
    return rc;
}

int sl__file_state_save(sl_fsink_t *fs)
{
    char tmp[sizeof fs->state_path + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", fs->state_path);
    int fd = openat(fs->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    FILE *fp = fdopen(fd, "w");
    if (fp == NULL) {
        close(fd);
        return SL_ENOMEM;
    }
    for (uint32_t i = 0; i < fs->n_files; i++)
        if (fs->files[i].in_use && fs->files[i].fd >= 0)
            fprintf(fp, "%s\n", fs->files[i].final);
    int rc = fflush(fp) == 0 && (fs->sync == SL_FILE_SYNC_NONE || fdatasync(fd) == 0) ? 0 : -errno;
    fclose(fp);
    if (rc == 0 && renameat(fs->dirfd, tmp, fs->dirfd, fs->state_path) != 0)
        rc = -errno;
    if (rc != 0)
        sl_log(SL_LOG_WARN, fs->who, rc, "cannot write the state file %s/%s", fs->dir, fs->state_path);
    return rc;
}

/* Cuts one left-over .part back to its complete units and renames it (or removes it when empty). */
static int sl__recover_one(sl_fsink_t *fs, const char *final)
{
    char part[SL_FILE_PATH_MAX + 48];
    snprintf(part, sizeof part, "%s.part", final);
    int fd = openat(fs->dirfd, part, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0; /* completed before the crash, or removed by hand */
    struct stat st;
    size_t good = 0, open_frame = SIZE_MAX;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) {
            good = sl__codec_valid_prefix(fs->comp, fs->fmt, m, (size_t)st.st_size, &open_frame);
            munmap(m, (size_t)st.st_size);
        }
    }
    int rc = ftruncate(fd, (off_t)good) == 0 ? 0 : -errno;
    if (rc == 0 && open_frame != SIZE_MAX && (rc = sl__zstd_seal(fd, open_frame, good)) == 0)
        good += 3; /* the zstd frame the predecessor left open, ended at its last batch */
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && good == 0)
        rc = unlinkat(fs->dirfd, part, 0) == 0 ? 0 : -errno;
    else if (rc == 0)
        rc = renameat(fs->dirfd, part, fs->dirfd, final) == 0 ? 0 : -errno;
    if (rc != 0) {
        sl_log(SL_LOG_ERROR, fs->who, rc, "cannot recover %s.part", final);
        return rc;
    }
    sl_log(SL_LOG_INFO, fs->who, 0, "recovered %s: kept %zu of %lld bytes left by the previous instance", final, good,
           (long long)st.st_size);
    return good > 0;
}

int sl__file_recover(sl_fsink_t *fs)
{
    int fd = openat(fs->dirfd, fs->state_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    FILE *fp = fdopen(fd, "r");
    if (fp == NULL) {
        close(fd);
        return SL_ENOMEM;
    }
    char line[SL_FILE_PATH_MAX + 40];
    int n = 0;
    while (fgets(line, sizeof line, fp) != NULL) {
        size_t len = strcspn(line, "\n");
        line[len] = '\0';
        /* The state file is ours, but it lives on disk: never follow an unsafe name in it. */
        if (sl__path_is_safe(line, len) && sl__recover_one(fs, line) > 0)
            n++;
    }
    fclose(fp);
    fs->recovered += (uint64_t)n;
    return n;
}
