/* Unit tests for the pure parts of the downstream consumer loop and its
 * MongoDB writes: back-off, what to do with a message given the store's
 * answer, replay consumer names, settings checks, and the reading of a
 * bulk-write reply. */
#include <stdlib.h>
#include <string.h>

#include "sl_consumer.h"
#include "sl_mongo.h"
#include "unit.h"

static char err[512];

static void test_backoff(void)
{
    CHECK(sl_consumer_backoff_ms(1, 60000) == 1000);
    CHECK(sl_consumer_backoff_ms(2, 60000) == 2000);
    CHECK(sl_consumer_backoff_ms(3, 60000) == 4000);
    CHECK(sl_consumer_backoff_ms(7, 60000) == 60000);
    CHECK(sl_consumer_backoff_ms(1000000, 60000) == 60000);
    CHECK(sl_consumer_backoff_ms(0, 60000) == 1000);
}

static void test_settle(void)
{
    CHECK(sl_consumer_settle(SL_MONGO_STORED, 1, 10) == SL_SETTLE_ACK);
    CHECK(sl_consumer_settle(SL_MONGO_STORED, 10, 10) == SL_SETTLE_ACK);
    CHECK(sl_consumer_settle(SL_MONGO_RETRY, 1, 10) == SL_SETTLE_NAK);
    CHECK(sl_consumer_settle(SL_MONGO_RETRY, 9, 10) == SL_SETTLE_NAK);
    /* The last allowed delivery: a nak would never come back. */
    CHECK(sl_consumer_settle(SL_MONGO_RETRY, 10, 10) == SL_SETTLE_DLQ);
    CHECK(sl_consumer_settle(SL_MONGO_REJECTED, 1, 10) == SL_SETTLE_DLQ);
}

static void settings_default(sl_consumer_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->nats.url = "nats://127.0.0.1:4222";
    s->mongodb_uri = "mongodb://127.0.0.1/sluice";
    s->stream = "SLUICE";
    s->consumer = "transform";
    s->replay_from_time = "";
    s->metrics_listen = "0.0.0.0:9091";
    s->log_level = "info";
    s->batch_size = 256;
    s->fetch_max_bytes = 8 << 20;
    s->max_ack_pending = 0;
    s->fetch_wait_ms = 500;
    s->ack_wait_ms = 30000;
    s->max_deliver = 10;
}

static void test_settings_check(void)
{
    sl_consumer_settings s;

    settings_default(&s);
    CHECK(sl_consumer_settings_check(&s, err, sizeof(err)));
    s.consumer = "trans.form";
    CHECK(!sl_consumer_settings_check(&s, err, sizeof(err)));
    CHECK(strncmp(err, "invalid --consumer", 18) == 0);
    settings_default(&s);
    s.replay_from_seq = 5;
    s.replay_from_time = "2026-01-01T00:00:00Z";
    CHECK(!sl_consumer_settings_check(&s, err, sizeof(err)));
    CHECK(strstr(err, "exclude each other") != NULL);
    settings_default(&s);
    s.replay_from_time = "yesterday";
    CHECK(!sl_consumer_settings_check(&s, err, sizeof(err)));
    CHECK(strncmp(err, "invalid --replay-from-time", 26) == 0);
    settings_default(&s);
    s.log_level = "loud";
    CHECK(!sl_consumer_settings_check(&s, err, sizeof(err)));
}

static void test_consumer_names(void)
{
    sl_consumer_settings s;
    char name[256];

    settings_default(&s);
    CHECK(sl_consumer_settings_check(&s, err, sizeof(err)));
    sl_consumer_name(&s, name, sizeof(name));
    CHECK_STR(name, "transform");
    s.replay_from_seq = 1200;
    sl_consumer_name(&s, name, sizeof(name));
    CHECK_STR(name, "transform-replay-seq-1200");
    settings_default(&s);
    s.replay_from_time = "2026-01-01T00:00:00Z";
    CHECK(sl_consumer_settings_check(&s, err, sizeof(err)));
    sl_consumer_name(&s, name, sizeof(name));
    CHECK_STR(name, "transform-replay-time-1767225600");
    s.replay_from_time = "2026-01-01T00:00:00.5Z";
    CHECK(sl_consumer_settings_check(&s, err, sizeof(err)));
    sl_consumer_name(&s, name, sizeof(name));
    CHECK_STR(name, "transform-replay-time-1767225600-500000000");
}

static bson_t *reply(const char *json)
{
    bson_error_t e;
    return bson_new_from_json((const uint8_t *)json, -1, &e);
}

static void test_reply_all_inserted(void)
{
    sl_mongo_outcome out[3];
    bson_t *r = reply("{\"nInserted\": 3, \"writeErrors\": []}");
    CHECK(sl_mongo_reply_outcomes(r, 3, out));
    for (int i = 0; i < 3; i++)
        CHECK(out[i].result == SL_MONGO_STORED && !out[i].duplicate);
    bson_destroy(r);
}

static void test_reply_duplicates_are_stored(void)
{
    sl_mongo_outcome out[4];
    bson_t *r = reply("{\"nInserted\": 1, \"writeErrors\": ["
                      "{\"index\": 0, \"code\": 11000, \"errmsg\": \"E11000 dup\"},"
                      "{\"index\": 2, \"code\": 2, \"errmsg\": \"invalid key\"},"
                      "{\"index\": 3, \"code\": 91, \"errmsg\": \"shutting down\"}]}");
    CHECK(sl_mongo_reply_outcomes(r, 4, out));
    CHECK(out[0].result == SL_MONGO_STORED && out[0].duplicate);
    CHECK(out[1].result == SL_MONGO_STORED && !out[1].duplicate);
    CHECK(out[2].result == SL_MONGO_REJECTED && out[2].code == 2);
    CHECK_STR(out[2].error, "invalid key");
    CHECK(out[3].result == SL_MONGO_RETRY && out[3].code == 91);
    bson_destroy(r);
}

static void test_reply_not_accounted_is_whole_batch_failure(void)
{
    sl_mongo_outcome out[3];
    bson_t *r = reply("{\"nInserted\": 1, \"writeErrors\": []}");
    CHECK(!sl_mongo_reply_outcomes(r, 3, out));
    bson_destroy(r);
    r = reply("{\"nInserted\": 3, \"writeConcernErrors\": [{\"code\": 64}]}");
    CHECK(!sl_mongo_reply_outcomes(r, 3, out));
    bson_destroy(r);
    r = reply("{\"nInserted\": 2, \"writeErrors\": [{\"index\": 7, \"code\": 11000}]}");
    CHECK(!sl_mongo_reply_outcomes(r, 3, out));
    bson_destroy(r);
    r = reply("{}");
    CHECK(!sl_mongo_reply_outcomes(r, 1, out));
    bson_destroy(r);
}

/* A reply naming one document twice in writeErrors does not account for
 * the batch: with nInserted it added up to the batch's size, and a document
 * the server never stored was counted as stored, then acknowledged. Found
 * by fuzz_mongo_reply. */
static void test_reply_repeated_index_is_whole_batch_failure(void)
{
    sl_mongo_outcome out[3];
    bson_t *r = reply("{\"nInserted\": 1, \"writeErrors\": [{\"index\": 0, \"code\": 2}, "
                      "{\"index\": 0, \"code\": 2}]}");
    CHECK(r != NULL);
    CHECK(!sl_mongo_reply_outcomes(r, 3, out));
    bson_destroy(r);
}

static void test_mongo_open_rejects_bad_uri(void)
{
    sl_mongo_config mc = {"postgres://x", "test", 1000};
    CHECK(sl_mongo_open(&mc, err, sizeof(err)) == NULL);
    CHECK(strncmp(err, "invalid MongoDB URI", 19) == 0);
}

/* An invalid URI is named in the error with its secrets masked, also
 * where libmongoc's own message quotes them: the line is printed at start,
 * and secrets stay out of logs. Found by fuzz_mongo_uri. */
static void test_mongo_uri_errors_hide_secrets(void)
{
    const char *bad[] = {
        "mongodb://app:s3cr3t@db.example:99999/sluice",
        "mongodb://app:s3cr3t@db.example/sluice?tls=maybe",
        "mongodb://app:s3cr3t@/sluice",
        "mongodb://app:pa/s3cr3t@db:99999/sluice",
        "mongodb://app:s3cr3t@db:99999/sluice?appname=a@b",
        "mongodb://db/sluice?tls=x&tlsCertificateKeyFilePassword=s3cr3t",
        "mongodb://db/sluice?TLSCERTIFICATEKEYFILEPASSWORD=s3cr3t&tls=x",
        "mongodb://app:pa:s3cr3t@db/sluice", /* libmongoc's message quotes it */
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sl_mongo_config mc = {bad[i], "test", 1000};
        CHECK(!sl_mongo_uri_check(bad[i], err, sizeof(err)));
        CHECK(strncmp(err, "invalid MongoDB URI \"", 21) == 0);
        CHECK(strstr(err, "s3cr3t") == NULL);
        CHECK(sl_mongo_open(&mc, err, sizeof(err)) == NULL);
        CHECK(strstr(err, "s3cr3t") == NULL);
    }
    CHECK(!sl_mongo_uri_check(bad[0], err, sizeof(err)));
    CHECK(strstr(err, "URI \"mongodb://app:***@db.example:99999/sluice\": ") != NULL);
    CHECK(!sl_mongo_uri_check(bad[5], err, sizeof(err)));
    CHECK(strstr(err, "\"mongodb://db/sluice?tls=x&tlsCertificateKeyFilePassword=***\"") != NULL);
}

static void test_mongo_database_from_uri(void)
{
    sl_mongo_config mc = {"mongodb://127.0.0.1:1/analytics", "test", 1000};
    sl_mongo *m = sl_mongo_open(&mc, err, sizeof(err));
    CHECK(m != NULL);
    CHECK_STR(sl_mongo_database(m), "analytics");
    sl_mongo_close(m);
    mc.uri = "mongodb://127.0.0.1:1";
    m = sl_mongo_open(&mc, err, sizeof(err));
    CHECK(m != NULL);
    CHECK_STR(sl_mongo_database(m), "sluice");
    sl_mongo_close(m);
}

static void test_consumer_config(void)
{
    sl_consumer_settings s;
    jsConsumerConfig cc;
    int64_t backoff[SL_CONSUMER_BACKOFF_STEPS];

    settings_default(&s);
    sl_consumer_config_fill(&s, "transform", &cc, backoff);
    /* Sluice counts deliveries; the server never drops a message. */
    CHECK(cc.MaxDeliver == -1);
    CHECK(cc.MaxAckPending == 2 * 256 * SL_CONSUMER_AUTO_REPLICAS);
    CHECK(cc.AckPolicy == js_AckExplicit);
    CHECK(cc.BackOffLen == SL_CONSUMER_BACKOFF_STEPS);
    CHECK(cc.BackOff[0] == 30000LL * 1000000 && cc.BackOff[1] == 60000LL * 1000000);
    s.max_ack_pending = 5000;
    s.max_deliver = 1;
    sl_consumer_config_fill(&s, "transform", &cc, backoff);
    CHECK(cc.MaxAckPending == 5000 && cc.MaxDeliver == -1);
}

static void test_consumer_plan(void)
{
    sl_consumer_settings s;
    jsConsumerConfig target, have, want;
    int64_t backoff[SL_CONSUMER_BACKOFF_STEPS], old_backoff[3] = {1, 2, 3};
    sl_consumer_diff d[SL_CONSUMER_MAX_DIFFS];
    int n;

    settings_default(&s);
    sl_consumer_config_fill(&s, "transform", &target, backoff);
    have = target;
    CHECK(sl_consumer_config_plan(&target, &have, &want, d) == 0);

    /* A consumer made by an earlier release: MaxDeliver 10 on the server,
     * the default MaxAckPending, another ack wait and back-off. */
    have.MaxDeliver = 10;
    have.MaxAckPending = 1000;
    have.AckWait = 5000LL * 1000000;
    have.BackOff = old_backoff;
    have.BackOffLen = 3;
    have.DeliverPolicy = js_DeliverNew;
    n = sl_consumer_config_plan(&target, &have, &want, d);
    CHECK(n == 5);
    CHECK(want.MaxDeliver == -1 && want.MaxAckPending == target.MaxAckPending);
    CHECK(want.AckWait == target.AckWait && want.BackOffLen == SL_CONSUMER_BACKOFF_STEPS);
    CHECK(want.DeliverPolicy == js_DeliverNew); /* JetStream cannot change it: kept */
    for (int i = 0; i < n; i++)
        CHECK(d[i].update == (strcmp(d[i].setting, "deliver_policy") != 0));
}

static void test_delivery_key(void)
{
    char key[SL_DELIVERY_KEY_LEN];

    sl_delivery_key("SLUICE", 42, 1764668545123456789LL, key, sizeof(key));
    CHECK_STR(key, "SLUICE:42:2025-12-02T09:42:25.123456789Z");
    /* The same sequence in a re-created stream is another message. */
    sl_delivery_key("SLUICE", 42, 1764668545123456790LL, key, sizeof(key));
    CHECK_STR(key, "SLUICE:42:2025-12-02T09:42:25.123456790Z");
}

int main(void)
{
    TEST(test_backoff);
    TEST(test_settle);
    TEST(test_settings_check);
    TEST(test_consumer_names);
    TEST(test_reply_all_inserted);
    TEST(test_reply_duplicates_are_stored);
    TEST(test_reply_not_accounted_is_whole_batch_failure);
    TEST(test_reply_repeated_index_is_whole_batch_failure);
    TEST(test_mongo_open_rejects_bad_uri);
    TEST(test_mongo_uri_errors_hide_secrets);
    TEST(test_mongo_database_from_uri);
    TEST(test_consumer_config);
    TEST(test_consumer_plan);
    TEST(test_delivery_key);
    return UNIT_RESULT();
}
