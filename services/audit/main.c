/* sluice-audit: reads the stream SLUICE through its own durable consumer
 * ("audit") and writes one entry per stream message into the MongoDB
 * collection `audit`: who sent what, when, how big, with which hash, never
 * the payload. Everything but the entry is the shared consumer loop
 * (lib/sl_consumer.c); the entry is audit.c.
 *
 * Start-up fails with exit status 2 and one line on stderr when the
 * configuration is invalid. SIGTERM or SIGINT finish the batch in hand,
 * settle it, and exit 0. */
#include "audit.h"
#include "sl_config.h"
#include "sl_consumer.h"
#include "sl_signal.h"
#include "sl_time.h"

#define SERVICE "sluice-audit"

static sl_consumer_settings cfg;
static sl_option options[SL_CONSUMER_NOPTIONS + 1];

static const sl_consumer_index indexes[] = {
    {"record_id", "{\"record_id\": 1}"},
};

static const char usage[] =
    "Usage: " SERVICE " [options]\n"
    "Reads the JetStream stream through a durable consumer and writes one audit entry\n"
    "per message (record id, type, key, payload hash and size, principal, times) into\n"
    "MongoDB `audit`. Every option is also an environment variable; flags win.";

/* The consumer thread. */
static bool build(void *closure, const sl_delivery *d, bson_t *doc, char *err, size_t errlen)
{
    (void)closure;
    return audit_entry_build(d, sl_time_now_ns(), doc, err, errlen);
}

int main(int argc, char **argv)
{
    sl_consumer_config cc = {SERVICE, &cfg, "audit", indexes, sizeof(indexes) / sizeof(indexes[0]),
                             build,   NULL};
    int rc;

    sl_signal_block();
    sl_consumer_options(options, &cfg, "audit", "0.0.0.0:9092");
    rc = sl_consumer_configure(SERVICE, options, usage, &cfg, argc, argv);
    if (rc < 0)
        rc = sl_consumer_main(&cc);
    sl_consumer_settings_free(&cfg);
    return rc;
}
