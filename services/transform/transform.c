/* transform: see transform.h. */
#include "transform.h"

#include <float.h>
#include <jq.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_record.h"
#include "sl_file.h"
#include "sl_pattern.h"

#define MAX_DEPTH 100
#define MAX_RULES_BYTES (4 << 20)
#define JQ_ERROR_LEN 512

typedef struct rule {
    char *pattern;
    char *program;
    jq_state *jq;
} rule;

struct transform_rules {
    rule *rules;
    size_t n;
    char jq_error[JQ_ERROR_LEN]; /* the first message jq reported while compiling */
};

/* ---- loading ------------------------------------------------------------ */

/* Keeps jq's first message, on one line; jq hands over msg. */
static void on_jq_error(void *closure, jv msg)
{
    transform_rules *r = closure;

    if (r->jq_error[0] == '\0') {
        jv text =
            jv_get_kind(msg) == JV_KIND_STRING ? jv_copy(msg) : jv_dump_string(jv_copy(msg), 0);
        snprintf(r->jq_error, sizeof(r->jq_error), "%s", jv_string_value(text));
        for (char *c = r->jq_error; *c != '\0'; c++)
            if (*c == '\n' || *c == '\r')
                *c = ' ';
        jv_free(text);
    }
    jv_free(msg);
}

static bool rule_compile(transform_rules *r, rule *ru, const char *origin, char *err, size_t errlen)
{
    ru->jq = jq_init();
    if (ru->jq == NULL) {
        snprintf(err, errlen, "rules file %s: out of memory", origin);
        return false;
    }
    r->jq_error[0] = '\0';
    jq_set_error_cb(ru->jq, on_jq_error, r);
    /* no module search path: an import is a clean "module not found",
     * where libjq 1.6 without one fails an assertion */
    jq_set_attr(ru->jq, jv_string("JQ_LIBRARY_PATH"), jv_array());
    if (jq_compile(ru->jq, ru->program))
        return true;
    snprintf(err, errlen, "rules file %s: jq program for \"%s\" does not compile: %s", origin,
             ru->pattern, r->jq_error[0] ? r->jq_error : "unknown error");
    return false;
}

static bool rule_add(transform_rules *r, const bson_iter_t *it, const char *origin, char *err,
                     size_t errlen)
{
    const char *pattern = bson_iter_key(it);
    rule *ru = &r->rules[r->n];

    if (!sl_pattern_valid(pattern)) {
        snprintf(err, errlen,
                 "rules file %s: \"%s\" is not a type pattern (dot-separated "
                 "tokens, \"*\" for one token, \">\" for the rest)",
                 origin, pattern);
        return false;
    }
    if (!BSON_ITER_HOLDS_UTF8(it)) {
        snprintf(err, errlen,
                 "rules file %s: the value of \"%s\" must be a jq program "
                 "(a string)",
                 origin, pattern);
        return false;
    }
    ru->pattern = bson_strdup(pattern);
    ru->program = bson_strdup(bson_iter_utf8(it, NULL));
    r->n++;
    return rule_compile(r, ru, origin, err, errlen);
}

static bool rules_fill(transform_rules *r, const bson_t *doc, const char *origin, char *err,
                       size_t errlen)
{
    bson_iter_t it;
    uint32_t count = bson_count_keys(doc);

    r->rules = calloc(count > 0 ? count : 1, sizeof(*r->rules));
    if (r->rules == NULL) {
        snprintf(err, errlen, "rules file %s: out of memory", origin);
        return false;
    }
    if (!bson_iter_init(&it, doc))
        return false;
    while (bson_iter_next(&it)) {
        if (!rule_add(r, &it, origin, err, errlen))
            return false;
    }
    return true;
}

transform_rules *transform_rules_parse(const char *json, size_t len, const char *origin, char *err,
                                       size_t errlen)
{
    transform_rules *r = calloc(1, sizeof(*r));
    bson_error_t error;
    size_t lead = 0;
    bson_t doc;

    /* bounded by len: the text need not end with a NUL */
    while (lead < len &&
           (json[lead] == ' ' || json[lead] == '\t' || json[lead] == '\r' || json[lead] == '\n'))
        lead++;
    if (r == NULL) {
        snprintf(err, errlen, "rules file %s: out of memory", origin);
        return NULL;
    }
    if (lead >= len || json[lead] != '{') {
        snprintf(err, errlen,
                 "rules file %s: must be a JSON object of type pattern -> jq "
                 "program",
                 origin);
        transform_rules_free(r);
        return NULL;
    }
    if (!bson_init_from_json(&doc, json, (ssize_t)len, &error)) {
        snprintf(err, errlen, "rules file %s: not valid JSON: %s", origin, error.message);
        transform_rules_free(r);
        return NULL;
    }
    if (!rules_fill(r, &doc, origin, err, errlen)) {
        transform_rules_free(r);
        r = NULL;
    }
    bson_destroy(&doc);
    return r;
}

transform_rules *transform_rules_load(const char *path, char *err, size_t errlen)
{
    char why[512];
    transform_rules *r;
    size_t len = 0;
    char *text;

    if (path == NULL || *path == '\0')
        return transform_rules_parse("{}", 2, "(none)", err, errlen);
    text = sl_file_read(path, MAX_RULES_BYTES, &len, why, sizeof(why));
    if (text == NULL) {
        snprintf(err, errlen, "rules file %s", why);
        return NULL;
    }
    r = transform_rules_parse(text, len, path, err, errlen);
    free(text);
    return r;
}

void transform_rules_free(transform_rules *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++) {
        jq_teardown(&r->rules[i].jq);
        bson_free(r->rules[i].pattern);
        bson_free(r->rules[i].program);
    }
    free(r->rules);
    free(r);
}

size_t transform_rules_count(const transform_rules *r)
{
    return r->n;
}

static rule *rules_find(const transform_rules *r, const char *type)
{
    for (size_t i = 0; i < r->n; i++) {
        if (sl_pattern_match(r->rules[i].pattern, type))
            return &r->rules[i];
    }
    return NULL;
}

const char *transform_rules_match(const transform_rules *r, const char *type)
{
    rule *ru = rules_find(r, type);
    return ru != NULL ? ru->pattern : NULL;
}

/* ---- running ------------------------------------------------------------ */

/* Writes the message an invalid jv carries (consumed) after prefix. */
static void invalid_describe(jv v, const char *prefix, char *err, size_t errlen)
{
    jv msg = jv_invalid_get_msg(v);
    jv text = jv_get_kind(msg) == JV_KIND_STRING ? jv_copy(msg) : jv_dump_string(jv_copy(msg), 0);
    snprintf(err, errlen, "%s%s", prefix, jv_string_value(text));
    jv_free(text);
    jv_free(msg);
}

/* Why the program gave no first output: an error, a halt, or nothing. */
static void no_output_describe(rule *ru, jv v, char *err, size_t errlen)
{
    char prefix[256];

    snprintf(prefix, sizeof(prefix), "jq rule \"%s\": ", ru->pattern);
    if (jv_invalid_has_msg(jv_copy(v))) {
        invalid_describe(v, prefix, err, errlen);
        return;
    }
    jv_free(v);
    snprintf(err, errlen, "jq rule \"%s\": %s", ru->pattern,
             jq_halted(ru->jq) ? "the program halted" : "the program produced no output");
}

static bool rule_run(rule *ru, jv input, jv *out, char *err, size_t errlen)
{
    jv first, second;

    jq_start(ru->jq, input, 0);
    first = jq_next(ru->jq);
    if (!jv_is_valid(first)) {
        no_output_describe(ru, first, err, errlen);
        return false;
    }
    second = jq_next(ru->jq);
    if (jv_is_valid(second)) {
        snprintf(err, errlen,
                 "jq rule \"%s\": the program must produce exactly one object, "
                 "it produced more than one output",
                 ru->pattern);
        jv_free(second);
        jv_free(first);
        return false;
    }
    if (jv_invalid_has_msg(jv_copy(second))) { /* an error after the first output */
        jv_free(first);
        no_output_describe(ru, second, err, errlen);
        return false;
    }
    jv_free(second);
    if (jv_get_kind(first) != JV_KIND_OBJECT) {
        snprintf(err, errlen, "jq rule \"%s\": the result is %s, not an object", ru->pattern,
                 jv_kind_name(jv_get_kind(first)));
        jv_free(first);
        return false;
    }
    *out = first;
    return true;
}

bool transform_apply(transform_rules *r, const char *type, const uint8_t *payload, size_t len,
                     jv *out, char *err, size_t errlen)
{
    jv input = jv_parse_sized((const char *)payload, (int)len);
    rule *ru;

    if (!jv_is_valid(input)) {
        invalid_describe(input, "payload is not JSON: ", err, errlen);
        return false;
    }
    if (jv_get_kind(input) != JV_KIND_OBJECT) {
        snprintf(err, errlen, "payload is %s, not a JSON object", jv_kind_name(jv_get_kind(input)));
        jv_free(input);
        return false;
    }
    ru = rules_find(r, type);
    if (ru == NULL) {
        *out = input;
        return true;
    }
    return rule_run(ru, input, out, err, errlen);
}

/* ---- jv -> BSON --------------------------------------------------------- */

static bool append_value(bson_t *doc, const char *key, jv v, int depth, char *err, size_t errlen);

static bool append_number(bson_t *doc, const char *key, double d)
{
    if (isnan(d))
        return bson_append_null(doc, key, -1);
    if (isinf(d))
        return bson_append_double(doc, key, -1, d > 0 ? DBL_MAX : -DBL_MAX);
    if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
        if (d >= INT32_MIN && d <= INT32_MAX)
            return bson_append_int32(doc, key, -1, (int32_t)d);
        return bson_append_int64(doc, key, -1, (int64_t)d);
    }
    return bson_append_double(doc, key, -1, d);
}

static bool append_array(bson_t *doc, const char *key, jv v, int depth, char *err, size_t errlen)
{
    bson_t child;
    bool ok = bson_append_array_begin(doc, key, -1, &child);
    int n = jv_array_length(jv_copy(v));

    for (int i = 0; ok && i < n; i++) {
        char buf[16];
        const char *ikey;
        jv e = jv_array_get(jv_copy(v), i);
        bson_uint32_to_string((uint32_t)i, &ikey, buf, sizeof(buf));
        ok = append_value(&child, ikey, e, depth + 1, err, errlen);
        jv_free(e);
    }
    return bson_append_array_end(doc, &child) && ok;
}

static bool append_object(bson_t *doc, const char *key, jv v, int depth, char *err, size_t errlen)
{
    bson_t child;
    bool ok = bson_append_document_begin(doc, key, -1, &child);

    for (int it = jv_object_iter(v); ok && jv_object_iter_valid(v, it);
         it = jv_object_iter_next(v, it)) {
        jv k = jv_object_iter_key(v, it);
        jv e = jv_object_iter_value(v, it);
        const char *ks = jv_string_value(k);
        if ((size_t)jv_string_length_bytes(jv_copy(k)) != strlen(ks)) {
            snprintf(err, errlen, "data: a key contains a NUL character");
            ok = false;
        } else {
            ok = append_value(&child, ks, e, depth + 1, err, errlen);
        }
        jv_free(k);
        jv_free(e);
    }
    return bson_append_document_end(doc, &child) && ok;
}

static bool append_value(bson_t *doc, const char *key, jv v, int depth, char *err, size_t errlen)
{
    if (depth > MAX_DEPTH) {
        snprintf(err, errlen, "data: nested deeper than %d levels", MAX_DEPTH);
        return false;
    }
    switch (jv_get_kind(v)) {
    case JV_KIND_NULL:
        return bson_append_null(doc, key, -1);
    case JV_KIND_TRUE:
        return bson_append_bool(doc, key, -1, true);
    case JV_KIND_FALSE:
        return bson_append_bool(doc, key, -1, false);
    case JV_KIND_NUMBER:
        return append_number(doc, key, jv_number_value(v));
    case JV_KIND_STRING:
        return bson_append_utf8(doc, key, -1, jv_string_value(v),
                                jv_string_length_bytes(jv_copy(v)));
    case JV_KIND_ARRAY:
        return append_array(doc, key, v, depth, err, errlen);
    case JV_KIND_OBJECT:
        return append_object(doc, key, v, depth, err, errlen);
    default:
        snprintf(err, errlen, "data: a value of kind %s", jv_kind_name(jv_get_kind(v)));
        return false;
    }
}

bool transform_jv_append(bson_t *doc, const char *key, jv v, char *err, size_t errlen)
{
    err[0] = '\0';
    if (!append_value(doc, key, v, 0, err, errlen)) {
        if (err[0] == '\0')
            snprintf(err, errlen, "data: larger than a BSON document can hold");
        return false;
    }
    return true;
}

/* ---- the document ------------------------------------------------------- */

/* '.' anywhere and '$' in front are the two things a stored key may not
 * hold; their full-width forms look the same and are stored as they are. */
static void attribute_key(const char *key, bson_string_t *out)
{
    for (const char *c = key; *c != '\0'; c++) {
        if (*c == '.')
            bson_string_append(out, "\xEF\xBC\x8E");
        else if (*c == '$' && c == key)
            bson_string_append(out, "\xEF\xBC\x84");
        else
            bson_string_append_c(out, *c);
    }
}

static void append_attributes(bson_t *doc, const Sluice__V1__Record *rec)
{
    bson_t child;

    bson_append_document_begin(doc, "attributes", -1, &child);
    for (size_t i = 0; i < rec->n_attributes; i++) {
        bson_string_t *key = bson_string_new(NULL);
        attribute_key(rec->attributes[i]->key, key);
        bson_append_utf8(&child, key->str, (int)key->len, rec->attributes[i]->value, -1);
        bson_string_free(key, true);
    }
    bson_append_document_end(doc, &child);
}

/* Ingest refuses times outside google.protobuf.Timestamp's range; a
 * message written by anything else may hold one past an int64 of
 * milliseconds, which is stored as null. */
static void append_time_or_null(bson_t *doc, const char *key, const Google__Protobuf__Timestamp *t)
{
    int64_t ms;

    if (t == NULL || __builtin_mul_overflow(t->seconds, (int64_t)1000, &ms) ||
        __builtin_add_overflow(ms, (int64_t)(t->nanos / 1000000), &ms))
        bson_append_null(doc, key, -1);
    else
        bson_append_date_time(doc, key, -1, ms);
}

static bool text_valid(const char *s)
{
    return bson_utf8_validate(s, strlen(s), false);
}

/* The id and type of the record, checked for what a document needs. */
static bool record_names(const sl_delivery *d, const Sluice__V1__Record *rec, const char **id,
                         const char **type, char *err, size_t errlen)
{
    *id = sl_delivery_record_id(d, rec);
    *type = rec->type != NULL && rec->type[0] != '\0' ? rec->type : sl_delivery_type(d);
    if (*id == NULL || !text_valid(*id))
        snprintf(err, errlen, "record has no usable id");
    else if (*type == NULL || !text_valid(*type))
        snprintf(err, errlen, "record has no usable type");
    else if (!text_valid(rec->key))
        snprintf(err, errlen, "record.key is not UTF-8");
    else
        return true;
    return false;
}

static bool document_append(bson_t *doc, const sl_delivery *d, const Sluice__V1__Record *rec,
                            const char *id, const char *type, jv data, int64_t now_ns, char *err,
                            size_t errlen)
{
    const char *traceparent = sl_delivery_header(d, SL_HDR_TRACEPARENT);
    const char *principal = sl_delivery_header(d, SL_HDR_PRINCIPAL);

    BSON_APPEND_UTF8(doc, "_id", id);
    BSON_APPEND_UTF8(doc, "type", type);
    if (rec->key[0] != '\0')
        BSON_APPEND_UTF8(doc, "key", rec->key);
    else
        BSON_APPEND_NULL(doc, "key");
    append_attributes(doc, rec);
    append_time_or_null(doc, "event_time", rec->event_time);
    BSON_APPEND_DATE_TIME(doc, "received_at", sl_delivery_received_ns(d) / 1000000);
    BSON_APPEND_INT64(doc, "stream_seq", (int64_t)d->stream_seq);
    /* headers are written as they are only when they are text */
    if (principal != NULL && principal[0] != '\0' && text_valid(principal))
        BSON_APPEND_UTF8(doc, "principal", principal);
    else
        BSON_APPEND_NULL(doc, "principal");
    if (!transform_jv_append(doc, "data", data, err, errlen))
        return false;
    BSON_APPEND_DATE_TIME(doc, "transformed_at", now_ns / 1000000);
    if (traceparent != NULL && traceparent[0] != '\0' && text_valid(traceparent))
        BSON_APPEND_UTF8(doc, "traceparent", traceparent);
    return true;
}

bool transform_document_build(transform_rules *r, const sl_delivery *d, int64_t now_ns, bson_t *doc,
                              char *err, size_t errlen)
{
    Sluice__V1__Record *rec = sl_delivery_record(d, err, errlen);
    const char *id = NULL, *type = NULL;
    jv data = jv_invalid();
    bool ok = rec != NULL;

    if (ok)
        ok = record_names(d, rec, &id, &type, err, errlen);
    if (ok)
        ok = transform_apply(r, type, rec->payload.data, rec->payload.len, &data, err, errlen);
    if (ok)
        ok = document_append(doc, d, rec, id, type, data, now_ns, err, errlen);
    jv_free(data);
    if (rec != NULL)
        sluice__v1__record__free_unpacked(rec, NULL);
    return ok;
}
