/*
 * sluice-kafka-mock: a Kafka cluster for tests and benchmarks, from librdkafka's mock cluster, over real
 * TCP on 127.0.0.1.
 *
 *   sluice-kafka-mock BROKERS TOPIC:PARTITIONS [TOPIC:PARTITIONS ...]
 *
 * Prints "bootstrap HOST:PORT,..." on stdout once the brokers listen, then takes one command per line on
 * stdin and answers "ok" (or "error: ...") to each, so a test knows a fault is in place before it goes on:
 *
 *   down ID | up ID              a broker stops / starts answering (connections are closed)
 *   rtt ID MS                    added round-trip latency of a broker
 *   produce_errors N CODE        the next N Produce requests fail with the Kafka error code CODE
 *                                (e.g. 10 = MESSAGE_TOO_LARGE, permanent; 7 = REQUEST_TIMED_OUT, retriable)
 *   topic NAME PARTITIONS        creates a topic
 *   quit                         (or end of input) stops the cluster and exits 0
 *
 * The mock cluster keeps about 5 MiB per partition: tests keep their runs inside that.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static int sl__mock_topic(rd_kafka_mock_cluster_t *mc, const char *spec)
{
    char name[256];
    int parts = 1;
    const char *colon = strchr(spec, ':');
    snprintf(name, sizeof name, "%.*s", colon ? (int)(colon - spec) : (int)strlen(spec), spec);
    if (colon)
        parts = atoi(colon + 1);
    return rd_kafka_mock_topic_create(mc, name, parts > 0 ? parts : 1, 1) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

static const char *sl__mock_command(rd_kafka_mock_cluster_t *mc, char *line)
{
    char cmd[32], arg[256];
    long a = 0, b = 0;
    int n = sscanf(line, "%31s %ld %ld", cmd, &a, &b);
    if (n < 1)
        return "error: empty command";
    if (strcmp(cmd, "down") == 0 && n >= 2)
        return rd_kafka_mock_broker_set_down(mc, (int32_t)a) ? "error: no such broker" : "ok";
    if (strcmp(cmd, "up") == 0 && n >= 2)
        return rd_kafka_mock_broker_set_up(mc, (int32_t)a) ? "error: no such broker" : "ok";
    if (strcmp(cmd, "rtt") == 0 && n >= 3)
        return rd_kafka_mock_broker_set_rtt(mc, (int32_t)a, (int)b) ? "error: no such broker" : "ok";
    if (strcmp(cmd, "produce_errors") == 0 && n >= 3) {
        rd_kafka_resp_err_t *errs = calloc((size_t)a, sizeof *errs);
        for (long i = 0; i < a; i++)
            errs[i] = (rd_kafka_resp_err_t)b;
        rd_kafka_mock_push_request_errors_array(mc, 0 /* Produce */, (size_t)a, errs);
        free(errs);
        return "ok";
    }
    if (strcmp(cmd, "topic") == 0 && sscanf(line, "%*s %255s %ld", arg, &a) == 2) {
        char spec[300];
        snprintf(spec, sizeof spec, "%s:%ld", arg, a);
        return sl__mock_topic(mc, spec) ? "error: cannot create topic" : "ok";
    }
    return "error: unknown command";
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s BROKERS [TOPIC:PARTITIONS ...]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
    /* The mock cluster lives in (and is served by the threads of) a client instance of its own. */
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        fprintf(stderr, "rd_kafka_new: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, atoi(argv[1]));
    if (mc == NULL) {
        fprintf(stderr, "rd_kafka_mock_cluster_new failed\n");
        return 1;
    }
    for (int i = 2; i < argc; i++)
        if (sl__mock_topic(mc, argv[i]) != 0) {
            fprintf(stderr, "cannot create topic %s\n", argv[i]);
            return 1;
        }
    printf("bootstrap %s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    char line[512];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "quit", 4) == 0)
            break;
        printf("%s\n", sl__mock_command(mc, line));
        fflush(stdout);
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
