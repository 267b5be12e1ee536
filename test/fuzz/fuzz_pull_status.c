/* fuzz_pull_status: a message on the consumers' pull subscription, as
 * sl_pull's fetch loop judges it (sl_pull_classify): a delivery to take,
 * the end or the refusal of the current pull request, its byte bound
 * reached, or a heartbeat or stale status to drop. The message is built
 * from the input as cnats builds it from the server's bytes (fuzz_nats.h):
 * subject, header block (with the status line), body.
 *
 * Oracles: a message with a body, or without a Status header, is a
 * delivery; an end, a refusal or a full bound comes only on the current
 * request's reply subject, with the status codes that mean it; a refusal
 * hands out its status (and description) for the log. */
#include "fuzz_nats.h"
#include "sl_pull.h"

#define REPLY "_INBOX.fuzz.7"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_nats_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size}, again = {data, size};
    natsMsg *m = fuzz_nats_msg(&in), *twin = fuzz_nats_msg(&again);
    const char *status, *desc, *header = NULL;
    bool has_status;
    sl_pull_kind k;

    if (m == NULL)
        return 0;
    k = sl_pull_classify(m, REPLY, &status, &desc);
    /* The Status header as a first lookup sees it, on a twin message: cnats
     * edits a header block while it parses it, so after a failed parse a
     * second lookup in the same message may read something else. */
    has_status = natsMsgHeader_Get(twin, "Status", &header) == NATS_OK;
    if (natsMsg_GetDataLength(m) > 0 || !has_status) {
        FUZZ_CHECK(k == SL_PULL_DATA);
    } else {
        FUZZ_CHECK(k != SL_PULL_DATA);
        FUZZ_CHECK(status != NULL && strcmp(status, header) == 0);
    }
    switch (k) {
    case SL_PULL_END:
        FUZZ_CHECK(strncmp(status, "404", 3) == 0 || strncmp(status, "408", 3) == 0 ||
                   (strncmp(status, "409", 3) == 0 && strstr(desc, "Batch Completed") != NULL));
        /* fall through */
    case SL_PULL_FULL:
    case SL_PULL_ERROR:
        FUZZ_CHECK(strcmp(natsMsg_GetSubject(m), REPLY) == 0);
        FUZZ_CHECK(strncmp(status, "100", 3) != 0);
        break;
    case SL_PULL_DATA:
    case SL_PULL_IGNORE:
        break;
    default:
        FUZZ_CHECK(!"a kind sl_pull.h does not name");
    }
    if (k == SL_PULL_FULL)
        FUZZ_CHECK(strncmp(status, "409", 3) == 0 && strstr(desc, "MaxBytes") != NULL);
    if (k == SL_PULL_ERROR)
        FUZZ_CHECK(strncmp(status, "404", 3) != 0 && strncmp(status, "408", 3) != 0);
    natsMsg_Destroy(twin);
    natsMsg_Destroy(m);
    return 0;
}
