/* Unit tests for sl_pull_classify: what each message on a pull
 * subscription is to the current fetch (a delivery, the end of the request,
 * its refusal, its byte bound reached, or something to drop), from messages
 * built with cnats as the server sends them. */
#include <stdlib.h>
#include <string.h>

#include "sl_pull.h"
#include "unit.h"

#define REPLY "_INBOX.abc.7"

/* A message on subject with body, and a Status (and Description) header
 * when status is not NULL. */
static natsMsg *msg(const char *subject, const char *body, const char *status, const char *desc)
{
    natsMsg *m = NULL;

    if (natsMsg_Create(&m, subject, NULL, body, (int)strlen(body)) != NATS_OK)
        return NULL;
    if (status != NULL)
        natsMsgHeader_Set(m, "Status", status);
    if (desc != NULL)
        natsMsgHeader_Set(m, "Description", desc);
    return m;
}

static sl_pull_kind kind_of(natsMsg *m, const char **status, const char **desc)
{
    return sl_pull_classify(m, REPLY, status, desc);
}

static void test_deliveries(void)
{
    const char *status, *desc;
    natsMsg *m = msg("sluice.rec.order.created", "\x0a\x01x", NULL, NULL);

    CHECK(m != NULL);
    CHECK(kind_of(m, &status, &desc) == SL_PULL_DATA);
    natsMsg_Destroy(m);
    /* a body makes a delivery, whatever its headers say */
    m = msg(REPLY, "{}", "404", "No Messages");
    CHECK(kind_of(m, &status, &desc) == SL_PULL_DATA);
    natsMsg_Destroy(m);
    /* so does an empty message without a Status header */
    m = msg("sluice.rec.a", "", NULL, NULL);
    CHECK(kind_of(m, &status, &desc) == SL_PULL_DATA);
    natsMsg_Destroy(m);
}

static void test_statuses(void)
{
    struct {
        const char *subject, *status, *desc;
        sl_pull_kind want;
    } cases[] = {
        {REPLY, "404", "No Messages", SL_PULL_END},
        {REPLY, "408", "Request Timeout", SL_PULL_END},
        {REPLY, "100", "Idle Heartbeat", SL_PULL_IGNORE},
        {"_INBOX.abc.6", "404", "No Messages", SL_PULL_IGNORE}, /* an earlier request's */
        {"_INBOX.abc.6", "409", "Consumer Deleted", SL_PULL_IGNORE},
        {REPLY, "409", "Exceeded MaxBytes", SL_PULL_FULL},
        {REPLY, "409", "Batch Completed", SL_PULL_END},
        {REPLY, "409", "Consumer Deleted", SL_PULL_ERROR},
        {REPLY, "409", NULL, SL_PULL_ERROR},
        {REPLY, "503", NULL, SL_PULL_ERROR},
        {REPLY, "", NULL, SL_PULL_ERROR},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *status, *desc;
        natsMsg *m = msg(cases[i].subject, "", cases[i].status, cases[i].desc);
        CHECK(m != NULL);
        CHECK(kind_of(m, &status, &desc) == cases[i].want);
        if (cases[i].want == SL_PULL_ERROR) {
            CHECK_STR(status, cases[i].status);
            CHECK(cases[i].desc == NULL ? desc == NULL : strcmp(desc, cases[i].desc) == 0);
        }
        natsMsg_Destroy(m);
    }
}

int main(void)
{
    nats_Open(-1);
    TEST(test_deliveries);
    TEST(test_statuses);
    nats_Close();
    return UNIT_RESULT();
}
