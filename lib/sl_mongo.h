/* sl_mongo: the MongoDB side of the downstream services: a client pool for a
 * URI, index provisioning, and the one write they make, an unordered bulk
 * insert in which "already there" counts as stored.
 *
 * Why insert and not upsert. Every document Sluice writes has a natural _id
 * (the record id, or "<stream>:<seq>"), so a redelivered message produces the
 * same _id again and the server answers with a duplicate-key error (11000)
 * for it: the first write wins, nothing is doubled, and nothing already
 * stored is rewritten. The same holds on MongoDB and on FerretDB; on FerretDB
 * 1.24 (SQLite) an unordered insert of 256 documents is about 250 times
 * faster than the same batch of upserting replaces, which it runs one query
 * at a time.
 *
 * Outcomes. sl_mongo_insert_many either reports one outcome per document, or
 * says the batch as a whole failed (server unreachable, timeout, write
 * concern not satisfied): the caller then retries every document, which is
 * safe because of the above. The split is made by sl_mongo_reply_outcomes, a
 * pure function over the bulk reply, so the rule can be tested without a
 * server: every document must be accounted for as inserted or as a write
 * error, and there must be no write-concern error; anything else is a
 * whole-batch failure.
 *
 * Secrets. MONGODB_URI may carry a password (mongodb://user:pass@host/db)
 * and secret options (tlsCertificateKeyFilePassword, authMechanism-
 * Properties); whatever shows a URI, in a log line or an error, shows
 * sl_mongo_uri_redact's form, in which each of them is "***". TLS and
 * credentials are the URI's options, handled by libmongoc:
 * ?tls=true&tlsCAFile=ca.pem&tlsCertificateKeyFile=client.pem.
 *
 * Threads: an sl_mongo may be used from any number of threads; each call
 * pops a client from the pool and pushes it back before returning. The pool
 * runs libmongoc's background monitoring thread. Write concern and read
 * preference are the URI's (w=majority only when the URI says so). */
#ifndef SL_MONGO_H
#define SL_MONGO_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_MONGO_DUPLICATE_KEY 11000

typedef struct sl_mongo sl_mongo;

typedef struct sl_mongo_config {
    const char *uri;     /* MONGODB_URI; the database is its path ("sluice" if none) */
    const char *appname; /* shown by the server, e.g. "sluice-transform" */
    /* Socket and server-selection timeouts when the URI sets none, so that a
     * dead server turns into an error well before a message's AckWait. */
    int64_t op_timeout_ms;
} sl_mongo_config;

/* What became of one document of a bulk insert. */
typedef enum sl_mongo_result {
    SL_MONGO_STORED = 0, /* inserted now, or already there (duplicate key) */
    SL_MONGO_RETRY,      /* failed in a way a later attempt may not */
    SL_MONGO_REJECTED,   /* the server will never take this document */
} sl_mongo_result;

typedef struct sl_mongo_outcome {
    sl_mongo_result result;
    bool duplicate;  /* stored earlier, by this or another delivery */
    int32_t code;    /* the server's error code, 0 when inserted */
    char error[160]; /* the server's message when not stored */
} sl_mongo_outcome;

/* Writes uri into out as it may be logged: the password (everything
 * between the user's ':' and the last '@', so that a malformed password
 * cannot slip through) and the values of the secret options become "***".
 * Truncates to outlen, never past it. Pure. */
void sl_mongo_uri_redact(const char *uri, char *out, size_t outlen);

/* True when uri is a MongoDB URI libmongoc accepts; else err holds why,
 * with the URI redacted. */
bool sl_mongo_uri_check(const char *uri, char *err, size_t errlen);

/* Parses cfg->uri and creates the pool; connects lazily. Returns NULL on an
 * invalid URI with err set to one line. */
sl_mongo *sl_mongo_open(const sl_mongo_config *cfg, char *err, size_t errlen);
void sl_mongo_close(sl_mongo *m);

/* The database every collection lives in. Owned by m. */
const char *sl_mongo_database(const sl_mongo *m);

/* One round trip ({ping: 1}); false with err set when the server does not
 * answer. */
bool sl_mongo_ping(sl_mongo *m, char *err, size_t errlen);

/* Creates the index named name on collection with the given keys (a JSON
 * object such as {"type": 1, "received_at": 1}, order kept) when missing. An
 * index that exists under that name with other keys is reported and kept.
 * Returns false, with err set, only when the server could not be asked. */
bool sl_mongo_ensure_index(sl_mongo *m, const char *collection, const char *name,
                           const char *keys_json, char *err, size_t errlen);

/* Inserts docs[0..n) into collection with one unordered bulk write. Returns
 * true when out[0..n) holds an outcome per document; false when the batch
 * failed as a whole (err set; out untouched). *elapsed_us receives the time
 * the write took, in both cases. */
bool sl_mongo_insert_many(sl_mongo *m, const char *collection, const bson_t *const *docs, size_t n,
                          sl_mongo_outcome *out, int64_t *elapsed_us, char *err, size_t errlen);

/* The pure part of sl_mongo_insert_many: fills out[0..n) from a bulk reply
 * ({nInserted, writeErrors: [{index, code, errmsg}], writeConcernErrors}).
 * Returns false when the reply does not account for every document. */
bool sl_mongo_reply_outcomes(const bson_t *reply, size_t n, sl_mongo_outcome *out);

/* True for server error codes that no retry can fix (bad value, document
 * too large, invalid field name); 11000 is not one of them, it is success. */
bool sl_mongo_code_is_permanent(int32_t code);

#endif
