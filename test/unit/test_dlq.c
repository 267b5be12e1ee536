/* Unit tests for dead letters: the subject, and the message built from the
 * original with its headers. */
#include <stdlib.h>
#include <string.h>

#include "sl_dlq.h"
#include "sl_record.h"
#include "unit.h"

static void test_subject(void)
{
    char s[256];
    sl_dlq_subject("transform", "order.created", s, sizeof(s));
    CHECK_STR(s, "sluice.dlq.transform.order.created");
    sl_dlq_subject("audit", NULL, s, sizeof(s));
    CHECK_STR(s, "sluice.dlq.audit.unknown");
    sl_dlq_subject("audit", "a..b", s, sizeof(s));
    CHECK_STR(s, "sluice.dlq.audit.unknown");
    sl_dlq_subject("audit", "a.*", s, sizeof(s));
    CHECK_STR(s, "sluice.dlq.audit.unknown");
    sl_dlq_subject("audit", "a b", s, sizeof(s));
    CHECK_STR(s, "sluice.dlq.audit.unknown");
}

static const char *header(natsMsg *m, const char *name)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, name, &v) == NATS_OK ? v : NULL;
}

static void test_letter(void)
{
    natsMsg *orig = NULL, *dead = NULL;
    sl_dlq_letter l = {NULL,
                       "transform",
                       "SLUICE",
                       42,
                       1764668545123456789LL,
                       "order.created",
                       "jq rule \"order.*\": boom\non two lines"};

    CHECK(natsMsg_Create(&orig, "sluice.rec.order.created", NULL, "body", 4) == NATS_OK);
    natsMsgHeader_Set(orig, SL_HDR_MSG_ID, "rec-1");
    natsMsgHeader_Set(orig, SL_HDR_TYPE, "order.created");
    natsMsgHeader_Set(orig, SL_HDR_KEY, "k");
    natsMsgHeader_Set(orig, "Nats-Expected-Stream", "SLUICE");
    natsMsgHeader_Add(orig, "X-Multi", "a");
    natsMsgHeader_Add(orig, "X-Multi", "b");
    l.original = orig;
    CHECK(sl_dlq_msg(&dead, &l) == NATS_OK);
    CHECK_STR(natsMsg_GetSubject(dead), "sluice.dlq.transform.order.created");
    CHECK(natsMsg_GetDataLength(dead) == 4 && memcmp(natsMsg_GetData(dead), "body", 4) == 0);
    CHECK_STR(header(dead, SL_HDR_MSG_ID), "transform:SLUICE:42:2025-12-02T09:42:25.123456789Z");
    CHECK_STR(header(dead, SL_HDR_RECORD_ID), "rec-1");
    CHECK_STR(header(dead, SL_HDR_TYPE), "order.created");
    CHECK_STR(header(dead, SL_HDR_KEY), "k");
    CHECK(header(dead, "Nats-Expected-Stream") == NULL);
    CHECK_STR(header(dead, SL_HDR_ERROR), "jq rule \"order.*\": boom on two lines");
    CHECK_STR(header(dead, SL_HDR_CONSUMER), "transform");
    CHECK_STR(header(dead, SL_HDR_STREAM_SEQ), "42");
    const char **values = NULL;
    int n = 0;
    CHECK(natsMsgHeader_Values(dead, "X-Multi", &values, &n) == NATS_OK && n == 2);
    free((void *)values);
    natsMsg_Destroy(dead);
    natsMsg_Destroy(orig);
}

static void test_letter_without_headers(void)
{
    natsMsg *orig = NULL, *dead = NULL;
    sl_dlq_letter l = {NULL, "audit", "SLUICE", 7, 0, NULL, "not a record"};

    CHECK(natsMsg_Create(&orig, "sluice.rec.x", NULL, "\xff", 1) == NATS_OK);
    l.original = orig;
    CHECK(sl_dlq_msg(&dead, &l) == NATS_OK);
    CHECK_STR(natsMsg_GetSubject(dead), "sluice.dlq.audit.unknown");
    CHECK(header(dead, SL_HDR_RECORD_ID) == NULL);
    CHECK_STR(header(dead, SL_HDR_MSG_ID), "audit:SLUICE:7:1970-01-01T00:00:00.000000000Z");
    natsMsg_Destroy(dead);
    natsMsg_Destroy(orig);
}

int main(void)
{
    nats_Open(-1); /* natsMsg needs the library even without a connection */
    TEST(test_subject);
    TEST(test_letter);
    TEST(test_letter_without_headers);
    nats_Close();
    return UNIT_RESULT();
}
