/* sl_mongo: see sl_mongo.h.
 *
 * The pool uses error API version 2, so a command the server refused comes
 * back in the MONGOC_ERROR_SERVER domain and everything else (no server,
 * socket timeout) in a client-side domain: that is how ensure_index tells
 * "the index exists with other keys" from "nobody answered". */
#include "sl_mongo.h"

#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sl_log.h"
#include "sl_time.h"

#define DEFAULT_DATABASE "sluice"
#define MAX_SELECTION_TIMEOUT_MS 5000

struct sl_mongo {
    mongoc_client_pool_t *pool;
    char *database;
};

/* ---- connection --------------------------------------------------------- */

/* libmongoc's log, on whatever thread it logs from, into ours. FerretDB does
 * not implement endSessions, which the driver sends on shutdown: that
 * warning is expected and goes to debug. */
static void on_mongoc_log(mongoc_log_level_t level, const char *domain, const char *message,
                          void *closure)
{
    sl_log_level ours;

    (void)closure;
    switch (level) {
    case MONGOC_LOG_LEVEL_ERROR:
    case MONGOC_LOG_LEVEL_CRITICAL:
        ours = SL_LOG_ERROR;
        break;
    case MONGOC_LOG_LEVEL_WARNING:
        ours = strstr(message, "endSessions") != NULL ? SL_LOG_DEBUG : SL_LOG_WARN;
        break;
    case MONGOC_LOG_LEVEL_MESSAGE:
    case MONGOC_LOG_LEVEL_INFO:
        ours = SL_LOG_INFO;
        break;
    case MONGOC_LOG_LEVEL_DEBUG:
        ours = SL_LOG_DEBUG;
        break;
    default:
        return; /* trace */
    }
    sl_log(ours, "libmongoc %s: %s", domain, message);
}

static void set_default_timeout(mongoc_uri_t *uri, const char *option, int64_t ms)
{
    if (!mongoc_uri_has_option(uri, option))
        mongoc_uri_set_option_as_int32(uri, option, (int32_t)ms);
}

static void apply_defaults(mongoc_uri_t *uri, const sl_mongo_config *cfg)
{
    int64_t op = cfg->op_timeout_ms > 0 ? cfg->op_timeout_ms : 10000;
    int64_t select = op < MAX_SELECTION_TIMEOUT_MS ? op : MAX_SELECTION_TIMEOUT_MS;

    if (op > INT32_MAX)
        op = INT32_MAX;
    set_default_timeout(uri, MONGOC_URI_SOCKETTIMEOUTMS, op);
    set_default_timeout(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, select);
    set_default_timeout(uri, MONGOC_URI_CONNECTTIMEOUTMS, select);
    if (cfg->appname != NULL && mongoc_uri_get_appname(uri) == NULL)
        mongoc_uri_set_appname(uri, cfg->appname);
}

/* ---- what may be logged of a URI ---------------------------------------- */

/* Options whose values are secrets (compared without case). */
static const char *const secret_options[] = {
    "tlsCertificateKeyFilePassword",
    "sslClientCertificateKeyPassword",
    "authMechanismProperties",
};

static void put(char *out, size_t outlen, size_t *at, const char *text, size_t n)
{
    if (outlen == 0)
        return;
    for (size_t i = 0; i < n && *at + 1 < outlen; i++)
        out[(*at)++] = text[i];
    out[*at] = '\0';
}

static bool option_secret(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(secret_options) / sizeof(secret_options[0]); i++) {
        if (strlen(secret_options[i]) == len && strncasecmp(name, secret_options[i], len) == 0)
            return true;
    }
    return false;
}

/* Copies "name=value&name=value..." with the secret values masked. */
static void put_query(char *out, size_t outlen, size_t *at, const char *q)
{
    while (*q != '\0') {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        if (eq != NULL && option_secret(q, (size_t)(eq - q))) {
            put(out, outlen, at, q, (size_t)(eq - q) + 1);
            put(out, outlen, at, "***", 3);
        } else {
            put(out, outlen, at, q, n);
        }
        q += n;
        if (*q == '&')
            put(out, outlen, at, q++, 1);
    }
}

void sl_mongo_uri_redact(const char *uri, char *out, size_t outlen)
{
    const char *scheme_end, *rest, *at_sign, *query;
    size_t at = 0;

    put(out, outlen, &at, "", 0);
    if (uri == NULL)
        return;
    scheme_end = strstr(uri, "://");
    rest = scheme_end != NULL ? scheme_end + 3 : uri;
    at_sign = strrchr(rest, '@');
    if (at_sign != NULL) {
        const char *colon = memchr(rest, ':', (size_t)(at_sign - rest));
        put(out, outlen, &at, uri, (size_t)((colon != NULL ? colon + 1 : at_sign) - uri));
        if (colon != NULL)
            put(out, outlen, &at, "***", 3);
        rest = at_sign;
    } else {
        put(out, outlen, &at, uri, (size_t)(rest - uri));
    }
    query = strchr(rest, '?');
    put(out, outlen, &at, rest, query != NULL ? (size_t)(query - rest) + 1 : strlen(rest));
    if (query != NULL)
        put_query(out, outlen, &at, query + 1);
}

/* What sl_mongo_uri_redact masks, as places in uri: the userinfo's
 * password and the values of the secret options. */
typedef struct secret {
    const char *at;
    size_t len;
} secret;

#define MAX_SECRETS 16

static size_t uri_secrets(const char *uri, secret *out)
{
    const char *scheme_end = strstr(uri, "://"), *rest, *at_sign, *q;
    size_t n = 0;

    rest = scheme_end != NULL ? scheme_end + 3 : uri;
    at_sign = strrchr(rest, '@');
    if (at_sign != NULL) {
        const char *colon = memchr(rest, ':', (size_t)(at_sign - rest));
        if (colon != NULL && at_sign > colon + 1)
            out[n++] = (secret){colon + 1, (size_t)(at_sign - colon - 1)};
        rest = at_sign;
    }
    q = strchr(rest, '?');
    for (q = q != NULL ? q + 1 : NULL; q != NULL && *q != '\0' && n < MAX_SECRETS;) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        if (eq != NULL && option_secret(q, (size_t)(eq - q)) && q + len > eq + 1)
            out[n++] = (secret){eq + 1, (size_t)(q + len - eq - 1)};
        q += len;
        if (*q == '&')
            q++;
    }
    return n;
}

/* text with every occurrence of each secret masked (malloc'd). */
static char *text_mask(const char *text, const secret *s, size_t n)
{
    char *cur = bson_strdup(text);

    for (size_t i = 0; i < n; i++) {
        bson_string_t *out = bson_string_new(NULL);
        char *needle = bson_strndup(s[i].at, s[i].len);
        const char *from = cur, *hit;
        while ((hit = strstr(from, needle)) != NULL) {
            bson_string_append_printf(out, "%.*s***", (int)(hit - from), from);
            from = hit + s[i].len;
        }
        bson_string_append(out, from);
        bson_free(needle);
        bson_free(cur);
        cur = bson_string_free(out, false);
    }
    return cur;
}

/* "invalid MongoDB URI "<redacted>": <why>", the secrets masked in why too:
 * libmongoc's message may quote the password ("Password "..." must not
 * have unescaped chars"). */
static void uri_error(const char *uri, const char *why, char *err, size_t errlen)
{
    char shown[1024];
    secret s[MAX_SECRETS];
    char *message = text_mask(why, s, uri_secrets(uri, s));

    sl_mongo_uri_redact(uri, shown, sizeof(shown));
    snprintf(err, errlen, "invalid MongoDB URI \"%s\": %s", shown, message);
    bson_free(message);
}

/* Drops libmongoc's log lines while a URI is only checked: the error that
 * comes back says the same, and a check at start prints one line. */
static void quiet_log(mongoc_log_level_t level, const char *domain, const char *message,
                      void *closure)
{
    (void)level;
    (void)domain;
    (void)message;
    (void)closure;
}

bool sl_mongo_uri_check(const char *uri, char *err, size_t errlen)
{
    bson_error_t error;
    mongoc_uri_t *u;

    mongoc_log_set_handler(quiet_log, NULL);
    u = mongoc_uri_new_with_error(uri, &error);
    mongoc_log_set_handler(on_mongoc_log, NULL);
    if (u == NULL) {
        uri_error(uri, error.message, err, errlen);
        return false;
    }
    mongoc_uri_destroy(u);
    return true;
}

/* One line on how the store is reached, nothing secret in it; a warning
 * when it neither identifies nor encrypts. */
static void log_access(const sl_mongo_config *cfg, const mongoc_uri_t *uri)
{
    const char *user = mongoc_uri_get_username(uri);
    bool tls = mongoc_uri_get_tls(uri);
    char shown[1024];

    sl_mongo_uri_redact(cfg->uri, shown, sizeof(shown));
    if ((user == NULL || user[0] == '\0') && !tls)
        sl_log(SL_LOG_WARN, "MongoDB: %s; no credentials; no TLS: open access, fine for a "
               "local run only (README, \"Security\")", shown);
    else
        sl_log(SL_LOG_INFO, "MongoDB: %s; %s%s; %s", shown, user ? "user " : "no credentials",
               user ? user : "", tls ? "TLS" : "no TLS");
}

sl_mongo *sl_mongo_open(const sl_mongo_config *cfg, char *err, size_t errlen)
{
    bson_error_t error;
    mongoc_uri_t *uri;
    const char *db;
    sl_mongo *m;

    mongoc_log_set_handler(on_mongoc_log, NULL);
    mongoc_init();
    uri = mongoc_uri_new_with_error(cfg->uri, &error);
    if (uri == NULL) {
        uri_error(cfg->uri, error.message, err, errlen);
        return NULL;
    }
    apply_defaults(uri, cfg);
    log_access(cfg, uri);
    db = mongoc_uri_get_database(uri);
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        mongoc_uri_destroy(uri);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->database = bson_strdup(db != NULL && *db != '\0' ? db : DEFAULT_DATABASE);
    m->pool = mongoc_client_pool_new(uri);
    mongoc_uri_destroy(uri);
    if (m->pool == NULL) {
        char shown[1024];
        sl_mongo_uri_redact(cfg->uri, shown, sizeof(shown));
        /* libmongoc refuses a pool when TLS options name files it cannot
         * load; it logs why (through on_mongoc_log). */
        snprintf(err, errlen, "cannot create a MongoDB client pool for \"%s\" (see the log)",
                 shown);
        sl_mongo_close(m);
        return NULL;
    }
    mongoc_client_pool_set_error_api(m->pool, MONGOC_ERROR_API_VERSION_2);
    return m;
}

void sl_mongo_close(sl_mongo *m)
{
    if (m == NULL)
        return;
    if (m->pool != NULL)
        mongoc_client_pool_destroy(m->pool);
    bson_free(m->database);
    free(m);
    mongoc_cleanup();
}

const char *sl_mongo_database(const sl_mongo *m)
{
    return m->database;
}

bool sl_mongo_ping(sl_mongo *m, char *err, size_t errlen)
{
    mongoc_client_t *client = mongoc_client_pool_pop(m->pool);
    bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
    bson_error_t error;
    bool ok = mongoc_client_command_simple(client, "admin", cmd, NULL, NULL, &error);

    if (!ok)
        snprintf(err, errlen, "%s", error.message);
    bson_destroy(cmd);
    mongoc_client_pool_push(m->pool, client);
    return ok;
}

/* ---- indexes ------------------------------------------------------------ */

static bool create_index(mongoc_client_t *client, const char *dbname, const char *collection,
                         const char *name, const bson_t *keys, bson_error_t *error)
{
    mongoc_database_t *db = mongoc_client_get_database(client, dbname);
    bson_t cmd = BSON_INITIALIZER, indexes, index;
    bool ok;

    BSON_APPEND_UTF8(&cmd, "createIndexes", collection);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &indexes);
    BSON_APPEND_DOCUMENT_BEGIN(&indexes, "0", &index);
    BSON_APPEND_DOCUMENT(&index, "key", keys);
    BSON_APPEND_UTF8(&index, "name", name);
    bson_append_document_end(&indexes, &index);
    bson_append_array_end(&cmd, &indexes);
    ok = mongoc_database_write_command_with_opts(db, &cmd, NULL, NULL, error);
    bson_destroy(&cmd);
    mongoc_database_destroy(db);
    return ok;
}

bool sl_mongo_ensure_index(sl_mongo *m, const char *collection, const char *name,
                           const char *keys_json, char *err, size_t errlen)
{
    bson_error_t error;
    bson_t *keys = bson_new_from_json((const uint8_t *)keys_json, -1, &error);
    mongoc_client_t *client;
    bool ok;

    if (keys == NULL) {
        snprintf(err, errlen, "index %s: keys %s: %s", name, keys_json, error.message);
        return false;
    }
    client = mongoc_client_pool_pop(m->pool);
    ok = create_index(client, m->database, collection, name, keys, &error);
    mongoc_client_pool_push(m->pool, client);
    bson_destroy(keys);
    if (ok) {
        sl_log(SL_LOG_INFO, "index %s.%s %s present", collection, name, keys_json);
        return true;
    }
    if (error.domain == MONGOC_ERROR_SERVER) {
        /* The server answered: the index exists in another shape. Keep it. */
        bson_t *f = sl_log_begin(SL_LOG_WARN, "index exists with other settings; keeping it");
        if (f != NULL) {
            BSON_APPEND_UTF8(f, "collection", collection);
            BSON_APPEND_UTF8(f, "index", name);
            BSON_APPEND_UTF8(f, "configured", keys_json);
            BSON_APPEND_UTF8(f, "server", error.message);
            sl_log_end(f);
        }
        return true;
    }
    snprintf(err, errlen, "creating index %s.%s: %s", collection, name, error.message);
    return false;
}

/* ---- bulk insert -------------------------------------------------------- */

bool sl_mongo_code_is_permanent(int32_t code)
{
    switch (code) {
    case 2:     /* BadValue: FerretDB's answer to a key it cannot store */
    case 52:    /* DollarPrefixedFieldName */
    case 55:    /* InvalidDBRef */
    case 56:    /* EmptyFieldName */
    case 57:    /* DottedFieldName */
    case 10334: /* BSONObjectTooLarge */
    case 17280: /* KeyTooLong */
        return true;
    default:
        return false;
    }
}

static void outcome_set(sl_mongo_outcome *o, int32_t code, const char *msg)
{
    o->code = code;
    o->duplicate = code == SL_MONGO_DUPLICATE_KEY;
    if (o->duplicate)
        o->result = SL_MONGO_STORED;
    else if (sl_mongo_code_is_permanent(code))
        o->result = SL_MONGO_REJECTED;
    else
        o->result = SL_MONGO_RETRY;
    snprintf(o->error, sizeof(o->error), "%s", msg != NULL ? msg : "");
}

/* Reads one writeErrors entry; false when it is malformed or names a
 * document an earlier entry named (the reply would then not account for
 * every document). */
static bool write_error_apply(const bson_t *entry, size_t n, sl_mongo_outcome *out)
{
    bson_iter_t it;
    int64_t index = -1;
    int32_t code = 0;
    const char *msg = NULL;

    if (bson_iter_init_find(&it, entry, "index") && BSON_ITER_HOLDS_NUMBER(&it))
        index = bson_iter_as_int64(&it);
    if (bson_iter_init_find(&it, entry, "code") && BSON_ITER_HOLDS_NUMBER(&it))
        code = (int32_t)bson_iter_as_int64(&it);
    if (bson_iter_init_find(&it, entry, "errmsg") && BSON_ITER_HOLDS_UTF8(&it))
        msg = bson_iter_utf8(&it, NULL);
    if (index < 0 || (size_t)index >= n || code == 0 || out[index].code != 0)
        return false;
    outcome_set(&out[index], code, msg);
    return true;
}

static bool array_nonempty(const bson_t *reply, const char *field)
{
    bson_iter_t it, child;
    return bson_iter_init_find(&it, reply, field) && BSON_ITER_HOLDS_ARRAY(&it) &&
           bson_iter_recurse(&it, &child) && bson_iter_next(&child);
}

bool sl_mongo_reply_outcomes(const bson_t *reply, size_t n, sl_mongo_outcome *out)
{
    bson_iter_t it, child;
    int64_t inserted = 0;
    size_t errors = 0;

    if (array_nonempty(reply, "writeConcernErrors"))
        return false;
    if (bson_iter_init_find(&it, reply, "nInserted") && BSON_ITER_HOLDS_NUMBER(&it))
        inserted = bson_iter_as_int64(&it);
    for (size_t i = 0; i < n; i++)
        out[i] = (sl_mongo_outcome){.result = SL_MONGO_STORED};
    if (bson_iter_init_find(&it, reply, "writeErrors") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &child)) {
        while (bson_iter_next(&child)) {
            bson_t entry;
            const uint8_t *data;
            uint32_t len;

            if (!BSON_ITER_HOLDS_DOCUMENT(&child))
                return false;
            bson_iter_document(&child, &len, &data);
            if (!bson_init_static(&entry, data, len) || !write_error_apply(&entry, n, out))
                return false;
            errors++;
        }
    }
    return inserted >= 0 && (size_t)inserted + errors == n;
}

/* Adds the documents to bulk; those the driver refuses before sending (keys
 * with '.' or a leading '$', invalid UTF-8) are rejected at once. op_of[k]
 * is the document index of bulk operation k. Returns the number added. */
static size_t bulk_fill(mongoc_bulk_operation_t *bulk, const bson_t *const *docs, size_t n,
                        sl_mongo_outcome *out, size_t *op_of)
{
    size_t ops = 0;
    bson_error_t error;

    for (size_t i = 0; i < n; i++) {
        if (mongoc_bulk_operation_insert_with_opts(bulk, docs[i], NULL, &error)) {
            op_of[ops++] = i;
        } else {
            out[i] = (sl_mongo_outcome){.result = SL_MONGO_REJECTED};
            bson_strncpy(out[i].error, error.message, sizeof(out[i].error));
        }
    }
    return ops;
}

static bool bulk_run(mongoc_bulk_operation_t *bulk, size_t ops, const size_t *op_of,
                     sl_mongo_outcome *out, char *err, size_t errlen)
{
    sl_mongo_outcome *per_op = calloc(ops, sizeof(*per_op));
    bson_error_t error;
    bson_t reply;
    bool ok;

    if (per_op == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    ok = mongoc_bulk_operation_execute(bulk, &reply, &error) != 0;
    if (ok || sl_mongo_reply_outcomes(&reply, ops, per_op)) {
        for (size_t k = 0; k < ops; k++)
            out[op_of[k]] = ok ? (sl_mongo_outcome){.result = SL_MONGO_STORED} : per_op[k];
        ok = true;
    } else {
        snprintf(err, errlen, "%s", error.message);
    }
    bson_destroy(&reply);
    free(per_op);
    return ok;
}

bool sl_mongo_insert_many(sl_mongo *m, const char *collection, const bson_t *const *docs, size_t n,
                          sl_mongo_outcome *out, int64_t *elapsed_us, char *err, size_t errlen)
{
    int64_t start = sl_time_now_ns();
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    mongoc_bulk_operation_t *bulk;
    bson_t opts = BSON_INITIALIZER;
    size_t *op_of, ops;
    bool ok = true;

    op_of = calloc(n > 0 ? n : 1, sizeof(*op_of));
    if (op_of == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    client = mongoc_client_pool_pop(m->pool);
    coll = mongoc_client_get_collection(client, m->database, collection);
    BSON_APPEND_BOOL(&opts, "ordered", false);
    bulk = mongoc_collection_create_bulk_operation_with_opts(coll, &opts);
    ops = bulk_fill(bulk, docs, n, out, op_of);
    if (ops > 0)
        ok = bulk_run(bulk, ops, op_of, out, err, errlen);
    mongoc_bulk_operation_destroy(bulk);
    bson_destroy(&opts);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(m->pool, client);
    free(op_of);
    *elapsed_us = (sl_time_now_ns() - start) / 1000;
    return ok;
}
