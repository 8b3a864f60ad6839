/*
 * `sluice verify PATH...`: the sequence check over files of telemetry: captures, NDJSON (what the file
 * sink writes, `.part` files included), `mosquitto_sub -v` output, gzip or not; a directory is read
 * recursively (names starting with "." skipped: the file sink's state files). Every record counts for its
 * device (topic) and sequence number ("seq"); the last line says how many distinct, lost, duplicated,
 * unparseable and corrupt there are. With --expect N (what the publisher says it published), messages
 * missing at the end of a device count as lost too.
 *
 * Exit status: 0 when nothing is lost or corrupt and every file could be read; 1 otherwise; 2 for usage.
 */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "config/config_int.h"
#include "ingest/capture/capture.h"

typedef struct sl_verify_s {
    sl_cap_seq_t *seq;
    uint64_t files, corrupt, unreadable;
    int depth;
} sl_verify_t;

static int sl__verify_path(sl_verify_t *v, const char *path);

static int sl__verify_file(sl_verify_t *v, const char *path)
{
    sl_cap_reader_t *rd;
    int rc = sl_cap_reader_open(path, &rd);
    if (rc != 0) {
        fprintf(stderr, "sluice verify: cannot read %s: %s\n", path, sl_strerror(rc));
        v->unreadable++;
        return 0;
    }
    v->files++;
    sl_cap_rec_t r;
    while ((rc = sl_cap_reader_next(rd, &r)) != SL_EOF) {
        if (rc == SL_EBADMSG) {
            const sl_cap_info_t *in = sl_cap_reader_info(rd);
            fprintf(stderr, "sluice verify: %s: corrupt record %llu at byte %llu: %s\n", path,
                    (unsigned long long)in->err_index, (unsigned long long)in->err_offset, in->err);
            v->corrupt++;
            continue;
        }
        if (rc != 0) {
            fprintf(stderr, "sluice verify: reading %s failed: %s\n", path, sl_strerror(rc));
            v->unreadable++;
            break;
        }
        if (sl_cap_seq_add(v->seq, &r) == SL_ENOMEM) {
            sl_cap_reader_destroy(rd);
            return SL_ENOMEM;
        }
    }
    sl_cap_reader_destroy(rd);
    return 0;
}

static int sl__verify_dir(sl_verify_t *v, const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        fprintf(stderr, "sluice verify: cannot open directory %s\n", path);
        v->unreadable++;
        return 0;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096];
        if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub)
            continue;
        rc = sl__verify_path(v, sub);
    }
    closedir(d);
    return rc;
}

static int sl__verify_path(sl_verify_t *v, const char *path)
{
    struct stat st;
    if (strcmp(path, "-") == 0)
        return sl__verify_file(v, path);
    if (stat(path, &st) != 0) {
        fprintf(stderr, "sluice verify: %s: no such file or directory\n", path);
        v->unreadable++;
        return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        if (v->depth >= 32)
            return 0;
        v->depth++;
        int rc = sl__verify_dir(v, path);
        v->depth--;
        return rc;
    }
    return S_ISREG(st.st_mode) ? sl__verify_file(v, path) : 0;
}

int sl_cli_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        {"expect", required_argument, NULL, 'e'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    uint64_t expect = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "e:h", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            if (sl__parse_count(optarg, &expect) != 0) {
                fprintf(stderr, "sluice verify: --expect wants a count\n");
                return SL_EXIT_FATAL;
            }
            break;
        case 'h':
            printf("usage: sluice verify [--expect N] PATH...\n"
                   "  checks the per-device sequence numbers (\"seq\") of every record in PATH (files or\n"
                   "  directories: captures, NDJSON, mosquitto_sub -v, gzip or not): lost, duplicates, corrupt.\n"
                   "  --expect N: N distinct messages were published (missing ones at the end count as lost)\n"
                   "  exit 0 when nothing is lost or corrupt\n");
            return 0;
        default: return SL_EXIT_FATAL;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "sluice verify: give one or more files or directories\n");
        return SL_EXIT_FATAL;
    }
    sl_verify_t v = {0};
    if (sl_cap_seq_new(&v.seq) != 0)
        return 1;
    int rc = 0;
    for (int i = optind; i < argc && rc == 0; i++)
        rc = sl__verify_path(&v, argv[i]);
    if (rc != 0) {
        fprintf(stderr, "sluice verify: %s\n", sl_strerror(rc));
        sl_cap_seq_destroy(v.seq);
        return 1;
    }
    sl_cap_seq_totals_t t;
    sl_cap_seq_totals(v.seq, expect, &t);
    sl_cap_seq_destroy(v.seq);
    char exp[64] = "";
    if (expect)
        snprintf(exp, sizeof exp, " of %llu expected", (unsigned long long)expect);
    printf("sluice verify: %llu files, %llu records from %llu devices: %llu distinct%s, lost %llu, duplicates %llu, "
           "unparseable %llu, corrupt %llu",
           (unsigned long long)v.files, (unsigned long long)t.records, (unsigned long long)t.devices,
           (unsigned long long)t.distinct, exp, (unsigned long long)t.lost, (unsigned long long)t.duplicates,
           (unsigned long long)t.unparseable, (unsigned long long)v.corrupt);
    if (t.extra)
        printf(", %llu more than expected", (unsigned long long)t.extra);
    if (v.unreadable)
        printf(", %llu unreadable", (unsigned long long)v.unreadable);
    printf("\n");
    return t.lost == 0 && t.extra == 0 && v.corrupt == 0 && v.unreadable == 0 ? 0 : 1;
}
