/* sluice-transform: reads the stream SLUICE through its durable consumer
 * ("transform"), runs the jq program configured for each record's type and
 * writes the result into the MongoDB collection `records`, one document per
 * record id. Everything but the rules is the shared consumer loop
 * (lib/sl_consumer.c); the rules and documents are transform.c.
 *
 * Start-up fails with exit status 2 and one line on stderr when the
 * configuration is invalid, including a rules file that does not parse or a
 * jq program that does not compile. SIGTERM or SIGINT finish the batch in
 * hand, settle it, and exit 0. */
#include <stdio.h>
#include <stdlib.h>

#include "sl_config.h"
#include "sl_consumer.h"
#include "sl_log.h"
#include "sl_signal.h"
#include "sl_time.h"
#include "transform.h"

#define SERVICE "sluice-transform"

typedef struct settings {
    sl_consumer_settings consumer;
    const char *rules;
} settings;

static settings cfg;
static sl_option options[SL_CONSUMER_NOPTIONS + 2];

static const sl_consumer_index indexes[] = {
    {"type_received_at", "{\"type\": 1, \"received_at\": 1}"},
};

static const char usage[] =
    "Usage: " SERVICE " [options]\n"
    "Reads the JetStream stream through a durable consumer, applies the jq program\n"
    "configured for each record's type and stores the result in MongoDB `records`.\n"
    "Every option is also an environment variable; flags win.";

static void options_init(void)
{
    sl_consumer_options(options, &cfg.consumer, "transform", "0.0.0.0:9091");
    /* clang-format off */
    options[SL_CONSUMER_NOPTIONS] = (sl_option){
        "transform-rules", "SLUICE_TRANSFORM_RULES", SL_OPT_STRING, "",
        "JSON file: type pattern -> jq program (empty: store every payload as sent)",
        &cfg.rules, 0, 0, NULL};
    /* clang-format on */
}

static int fail(const char *line)
{
    fprintf(stderr, SERVICE ": %s\n", line);
    return 2;
}

/* The consumer thread. */
static bool build(void *closure, const sl_delivery *d, bson_t *doc, char *err, size_t errlen)
{
    return transform_document_build(closure, d, sl_time_now_ns(), doc, err, errlen);
}

int main(int argc, char **argv)
{
    sl_consumer_config cc = {
        SERVICE, &cfg.consumer, "records", indexes, sizeof(indexes) / sizeof(indexes[0]),
        build,   NULL};
    transform_rules *rules;
    char err[1024];
    int rc;

    sl_signal_block();
    options_init();
    rc = sl_consumer_configure(SERVICE, options, usage, &cfg.consumer, argc, argv);
    if (rc >= 0)
        return rc;
    rules = transform_rules_load(cfg.rules, err, sizeof(err));
    if (rules == NULL) {
        sl_consumer_settings_free(&cfg.consumer);
        return fail(err);
    }
    sl_log(SL_LOG_INFO, "%zu transform rules from %s", transform_rules_count(rules),
           cfg.rules[0] ? cfg.rules : "(none: identity)");
    cc.closure = rules;
    rc = sl_consumer_main(&cc);
    transform_rules_free(rules);
    sl_consumer_settings_free(&cfg.consumer);
    return rc;
}
