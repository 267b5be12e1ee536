/* fuzz_nats.h: a NATS message made from fuzz bytes the way cnats makes one
 * from what the server sends.
 *
 * The server delivers a message with headers as HMSG: a header block
 * ("NATS/1.0[ status[ description]]\r\n", "Name: value\r\n" lines, "\r\n")
 * followed by the body. cnats keeps the block as received and parses it
 * ("lifts" it) on the first header lookup. Its public natsMsg_Create makes
 * messages without such a block, so the harnesses use the function its
 * parser calls, natsMsg_create, which libnats exports but does not declare
 * (cnats 3.4's signature, checked when a harness starts: fuzz_nats_init).
 *
 * The input is read as:
 *
 *     <subject> "\n" [<header block, up to and with the first "\r\n\r\n">] <body>
 *
 * A header block is taken only when the bytes after the subject contain
 * "\r\n\r\n"; otherwise all of them are the body. */
#ifndef SL_FUZZ_NATS_H
#define SL_FUZZ_NATS_H

#include <nats/nats.h>

#include "fuzz.h"

/* libnats 3.4 (src/msg.h); buf holds the header block then the body. */
natsStatus natsMsg_create(natsMsg **newMsg, const char *subject, int subjLen, const char *reply,
                          int replyLen, const char *buf, int bufLen, int hdrLen);

/* The message of the rest of in (see above); NULL for an empty subject,
 * which the server never sends. */
static inline natsMsg *fuzz_nats_msg(fuzz_in *in)
{
    const uint8_t *subject, *at;
    size_t slen, hlen = 0;
    natsMsg *m = NULL;

    subject = fuzz_until(in, "\n", &slen);
    if (slen == 0 || slen > 4096 || in->n > INT32_MAX)
        return NULL;
    at = in->n >= 4 ? memmem(in->p, in->n, "\r\n\r\n", 4) : NULL;
    if (at != NULL)
        hlen = (size_t)(at - in->p) + 4;
    if (natsMsg_create(&m, (const char *)subject, (int)slen, NULL, 0, (const char *)in->p,
                       (int)in->n, (int)hlen) != NATS_OK)
        return NULL;
    return m;
}

/* Opens the library and checks that natsMsg_create still reads its
 * arguments as declared above. */
static inline void fuzz_nats_init(void)
{
    static const char raw[] = "NATS/1.0 404 No Messages\r\nA: b\r\n\r\nbody";
    fuzz_in in = {(const uint8_t *)"sub\nNATS/1.0 404 No Messages\r\nA: b\r\n\r\nbody",
                  sizeof("sub\n") - 1 + sizeof(raw) - 1};
    const char *v = NULL;
    natsMsg *m;

    FUZZ_CHECK(nats_Open(-1) == NATS_OK);
    m = fuzz_nats_msg(&in);
    FUZZ_CHECK(m != NULL && strcmp(natsMsg_GetSubject(m), "sub") == 0);
    FUZZ_CHECK(natsMsg_GetDataLength(m) == 4 && memcmp(natsMsg_GetData(m), "body", 4) == 0);
    FUZZ_CHECK(natsMsgHeader_Get(m, "A", &v) == NATS_OK && strcmp(v, "b") == 0);
    FUZZ_CHECK(natsMsgHeader_Get(m, "Status", &v) == NATS_OK && strcmp(v, "404") == 0);
    natsMsg_Destroy(m);
}

#endif
