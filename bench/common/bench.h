/*
 * What the benchmarks share: a spawner that runs the sluice binary and measures its process tree, medians,
 * and the one line a script reads at the end of every benchmark.
 *
 * Memory of a multi-process sluice is reported three ways, because no single number is honest alone:
 *  - max_rss_kb: wait4's ru_maxrss, the largest peak RSS of any one process of the tree (the master or a
 *    worker). This is the figure /usr/bin/time -v prints as "Maximum resident set size".
 *  - sum_rss_kb: the sum over every process of the tree of its own peak RSS (VmHWM), sampled every 50 ms.
 *    Shared pages (the channels' rings, mapped by both of their ends) count once per process here, so it
 *    overstates what the machine spends; an upper bound.
 *  - pss_kb: the largest sum of PSS (shared pages split between the processes that map them) over the tree
 *    at one sample: the memory the pipeline really holds at its peak, to within the 50 ms sampling.
 * The spawner is forked at the very start of main, while the benchmark is small: a fork from a grown
 * process would count its pages in the child's peak RSS before the exec.
 */
#ifndef SL_BENCH_H
#define SL_BENCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl_bench_proc_s {
    double secs;     /* wall time from the fork to the exit of the master */
    double cpu_secs; /* user + system CPU of the process and the children it reaped (wait4) */
    long max_rss_kb; /* largest peak RSS of one process (wait4, = /usr/bin/time -v) */
    long sum_rss_kb; /* sum of every process's peak RSS (VmHWM; shared rings counted in each) */
    long pss_kb;     /* largest sum of PSS over the tree at one sample */
    int status;      /* wait status */
    uint32_t nprocs; /* processes seen in the tree */
} sl_bench_proc_t;

/* Forks the spawner. Call first thing in main. */
void sl_bench_spawner_start(void);

/* Runs argv (argv[0] a path) through the spawner; stdout and stderr go to log_path when not NULL.
 * Returns 0 when it exited 0, -1 otherwise (*res is filled either way). */
int sl_bench_spawn(char *const argv[], const char *log_path, sl_bench_proc_t *res);

/* `sluice run -c cfg` with stderr (the log) to log_path, or quiet (-q) when log_path is NULL. */
int sl_bench_run_sluice(const char *sluice, const char *cfg, const char *log_path, sl_bench_proc_t *res);

/* For a process tree started another way (the MQTT harness): samples it once now and folds what it sees
 * into *acc (each process's VmHWM counted in max and sum, the tree's PSS now in pss_kb). */
void sl_bench_tree_sample(int root_pid, sl_bench_proc_t *acc);

/* Folds one run's memory figures into the maxima kept over the runs. */
void sl_bench_mem_max(sl_bench_proc_t *acc, const sl_bench_proc_t *run);

/* The generator's events (what `type: generator` with `devices` and `payload_size` emits: topic
 * fleet/dev-NNNNNNN/telemetry, key dev-NNNNNNN, attribute device_id, a JSON payload with the device, a
 * per-device sequence number and a time, padded to payload_size >= 120) as n channel records laid out one
 * after the other (SL_REC_ALIGN-aligned), built in memory, untimed, for a raw side to read: distinct bytes
 * per event, as the sink reads them, never one buffer sent n times. Returns the malloc'd buffer (its
 * length in *len), or exits on no memory. */
uint8_t *sl_bench_gen_records(uint64_t n, unsigned devices, unsigned payload_size, size_t *len);

/* Median of v[0..n) (sorts v). */
double sl_bench_median(double *v, int n);

/* The last line of a benchmark: "NAME: events_per_s=.. raw_events_per_s=.. ratio=.. peak_rss_kb=..
 * sum_rss_kb=.. pss_kb=.." and the extra "key=value" pairs given (may be NULL). */
void sl_bench_result(const char *name, double events, double raw, const sl_bench_proc_t *mem, const char *extra);

/* Reads "lat p50 Xus p99 Yus p999 Zus" of sink `sink` from a total line in log_path (metrics.latency).
 * Returns 0 and the three figures in microseconds, or -1 when absent. */
int sl_bench_latency(const char *log_path, const char *sink, double us[3]);

/* Reading sluice's log (benchmarks that start it through the integration harness). */
/* Milliseconds since the epoch of a log line "HH:MM:SS.mmm ..." written today (UTC, as sl_log writes). */
uint64_t sl_bench_log_ms(const char *line);
/* "12", "200.0k", "1.20M" (the summary line's figures) -> the number. */
double sl_bench_human(const char *p);
/* The count of node `node` ("NAME in N") in the last summary line of log, and in *t_ms the time of the
 * first line that showed that count: when the last event arrived, to the summary interval. */
double sl_bench_summary_count(const char *log, const char *node, uint64_t *t_ms);

#endif /* SL_BENCH_H */
