/* sl_pb_check: see sl_pb_check.h.
 *
 * The walk reads one field at a time (read_field), looks its number up in
 * the message's descriptor and checks it (check_field): a string's bytes, or
 * a message's fields one level down (check_message). The path of the field
 * in hand is kept in the walker as text and cut back on the way up, so a
 * fault is reported without building anything on the happy path. The index
 * of a repeated field's element is counted only when there is a fault to
 * report, by reading the enclosing message again up to the element. */
#include "sl_pb_check.h"

#include <bson/bson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

#define MAX_FIELD_NUMBER ((1u << 29) - 1)

/* One field as it sits on the wire. */
typedef struct field {
    const uint8_t *at; /* its tag */
    uint32_t number;
    unsigned wire_type;
    const uint8_t *data; /* WIRE_LEN: the bytes */
    size_t len;
} field;

typedef struct walker {
    const uint8_t *base; /* the whole input, for byte offsets */
    char *msg;
    size_t msglen;
    char path[256];
    size_t plen;
} walker;

/* ---- reporting ------------------------------------------------------------ */

static sl_pb_result report(walker *w, sl_pb_result r, const char *fmt, ...)
{
    va_list ap;
    if (w->msglen == 0)
        return r;
    va_start(ap, fmt);
    vsnprintf(w->msg, w->msglen, fmt, ap);
    va_end(ap);
    return r;
}

static sl_pb_result malformed(walker *w, const uint8_t *at, const char *what)
{
    return report(w, SL_PB_MALFORMED, "byte %zu: %s", (size_t)(at - w->base), what);
}

/* Appends to the path; a path too long for the buffer is cut (names come
 * from the descriptor: ASCII, so the cut leaves valid UTF-8). Returns the
 * length to cut back to. */
static size_t path_push(walker *w, const char *fmt, ...)
{
    size_t before = w->plen;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(w->path + w->plen, sizeof(w->path) - w->plen, fmt, ap);
    va_end(ap);
    if (n > 0)
        w->plen +=
            (size_t)n < sizeof(w->path) - w->plen ? (size_t)n : sizeof(w->path) - 1 - w->plen;
    return before;
}

static void path_pop(walker *w, size_t to)
{
    w->plen = to;
    w->path[to] = '\0';
}

/* ---- reading the wire -------------------------------------------------------- */

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = x;
            return true;
        }
    }
    return false; /* ran off the end, or longer than ten bytes */
}

/* Reads the field at *p and moves *p past it. */
static sl_pb_result read_field(walker *w, const uint8_t **p, const uint8_t *end, field *f)
{
    uint64_t tag, v;

    f->at = *p;
    if (!read_varint(p, end, &tag) || tag > UINT32_MAX)
        return malformed(w, f->at, "truncated varint");
    f->number = (uint32_t)(tag >> 3);
    f->wire_type = (unsigned)(tag & 7);
    if (f->number == 0)
        return malformed(w, f->at, "field number 0");
    switch (f->wire_type) {
    case WIRE_VARINT:
        if (!read_varint(p, end, &v))
            return malformed(w, f->at + 1, "truncated varint");
        return SL_PB_OK;
    case WIRE_FIXED64:
        if (end - *p < 8)
            return malformed(w, *p, "truncated fixed64");
        *p += 8;
        return SL_PB_OK;
    case WIRE_FIXED32:
        if (end - *p < 4)
            return malformed(w, *p, "truncated fixed32");
        *p += 4;
        return SL_PB_OK;
    case WIRE_LEN: {
        const uint8_t *len_at = *p;
        if (!read_varint(p, end, &v))
            return malformed(w, len_at, "truncated varint");
        if (v > (uint64_t)(end - *p))
            return report(w, SL_PB_MALFORMED, "byte %zu: length %llu past the end",
                          (size_t)(len_at - w->base), (unsigned long long)v);
        f->data = *p;
        f->len = (size_t)v;
        *p += v;
        return SL_PB_OK;
    }
    default:
        return report(w, SL_PB_MALFORMED, "byte %zu: wire type %u%s", (size_t)(f->at - w->base),
                      f->wire_type,
                      f->wire_type == 3 || f->wire_type == 4 ? " (groups are not read)" : "");
    }
}

/* How many fields numbered `number` come before `until` in the message
 * that starts at start (all of it read once already). */
static size_t count_before(const uint8_t *start, const uint8_t *until, uint32_t number)
{
    walker quiet = {.base = start};
    const uint8_t *p = start;
    size_t n = 0;
    field f;

    while (p < until && read_field(&quiet, &p, until, &f) == SL_PB_OK)
        n += f.number == number;
    return n;
}

/* ---- checking ---------------------------------------------------------------- */

static sl_pb_result check_message(walker *w, const ProtobufCMessageDescriptor *desc,
                                  const uint8_t *data, size_t len, int depth, bool map_entry);

/* A map<K, V> field is a repeated message of protoc's <Name>Entry type with
 * fields key = 1 and value = 2; protobuf-c keeps no map_entry option, so
 * that shape is how one is known. */
static bool is_map(const ProtobufCFieldDescriptor *fd)
{
    const ProtobufCMessageDescriptor *e = fd->descriptor;
    size_t n;

    if (fd->type != PROTOBUF_C_TYPE_MESSAGE || fd->label != PROTOBUF_C_LABEL_REPEATED ||
        e == NULL || e->n_fields != 2)
        return false;
    n = strlen(e->short_name);
    return n > 5 && strcmp(e->short_name + n - 5, "Entry") == 0 && e->fields[0].id == 1 &&
           strcmp(e->fields[0].name, "key") == 0 && e->fields[1].id == 2 &&
           strcmp(e->fields[1].name, "value") == 0;
}

static sl_pb_result check_string(walker *w, const field *f, const char *which)
{
    const char *rule;

    if (memchr(f->data, '\0', f->len) != NULL)
        rule = "must not contain NUL bytes";
    else if (!bson_utf8_validate((const char *)f->data, f->len, false))
        rule = "must be valid UTF-8";
    else
        return SL_PB_OK;
    return report(w, SL_PB_BAD_STRING, "%s: %s%s", w->path, which, rule);
}

/* Names the field in the path: ".name", with "[i]" for an element of a
 * repeated field; nothing for the key or value of a map entry, which is
 * reported as its map. */
static size_t name_field(walker *w, const ProtobufCFieldDescriptor *fd, const uint8_t *start,
                         const field *f, bool map_entry)
{
    const char *dot = w->plen > 0 ? "." : "";

    if (map_entry)
        return fd->type == PROTOBUF_C_TYPE_MESSAGE ? path_push(w, ".%s", fd->name) : w->plen;
    if (fd->label == PROTOBUF_C_LABEL_REPEATED && !is_map(fd))
        return path_push(w, "%s%s[%zu]", dot, fd->name, count_before(start, f->at, f->number));
    return path_push(w, "%s%s", dot, fd->name);
}

/* Checks one field of the message of type desc that starts at start. */
static sl_pb_result check_field(walker *w, const ProtobufCMessageDescriptor *desc,
                                const uint8_t *start, const field *f, int depth, bool map_entry)
{
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(desc, f->number);
    const char *which = !map_entry ? "" : f->number == 1 ? "a key " : "a value ";
    sl_pb_result r;
    size_t mark;

    if (fd == NULL || (fd->type != PROTOBUF_C_TYPE_STRING && fd->type != PROTOBUF_C_TYPE_MESSAGE))
        return SL_PB_OK; /* unknown, or not a string */
    mark = name_field(w, fd, start, f, map_entry);
    if (f->wire_type != WIRE_LEN)
        r = report(w, SL_PB_MALFORMED, "byte %zu: %s: wire type %u where a %s belongs",
                   (size_t)(f->at - w->base), w->path, f->wire_type,
                   fd->type == PROTOBUF_C_TYPE_STRING ? "string" : "message");
    else if (fd->type == PROTOBUF_C_TYPE_STRING)
        r = check_string(w, f, which);
    else
        r = check_message(w, fd->descriptor, f->data, f->len, depth + 1, is_map(fd));
    path_pop(w, mark);
    return r;
}

static sl_pb_result check_message(walker *w, const ProtobufCMessageDescriptor *desc,
                                  const uint8_t *data, size_t len, int depth, bool map_entry)
{
    const uint8_t *p = data, *end = data + len;
    sl_pb_result r = SL_PB_OK;
    field f;

    if (depth > SL_PB_MAX_DEPTH)
        return report(w, SL_PB_MALFORMED, "byte %zu: messages nested deeper than %d",
                      (size_t)(data - w->base), SL_PB_MAX_DEPTH);
    while (r == SL_PB_OK && p < end) {
        r = read_field(w, &p, end, &f);
        if (r == SL_PB_OK)
            r = check_field(w, desc, data, &f, depth, map_entry);
    }
    return r;
}

/* ---- entry points ------------------------------------------------------------ */

sl_pb_result sl_pb_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                         char *msg, size_t msglen)
{
    walker w = {.base = data, .msg = msg, .msglen = msglen};
    return check_message(&w, desc, data, len, 0, false);
}

sl_pb_result sl_pb_check_each(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                              size_t len, sl_pb_fault_fn fault, void *closure, char *msg,
                              size_t msglen)
{
    walker w = {.base = data, .msg = msg, .msglen = msglen};
    const uint8_t *p = data, *end = data + len;
    sl_pb_result r, worst = SL_PB_OK;
    char line[512];
    field f;

    while (p < end) {
        if ((r = read_field(&w, &p, end, &f)) != SL_PB_OK)
            return r;
        /* each occurrence reports into line, so that one fault does not
         * hide the next */
        w.msg = line;
        w.msglen = sizeof(line);
        r = check_field(&w, desc, data, &f, 0, false);
        w.msg = msg;
        w.msglen = msglen;
        if (r == SL_PB_MALFORMED)
            return report(&w, r, "%s", line);
        if (r == SL_PB_BAD_STRING) {
            fault(closure, f.number, count_before(data, f.at, f.number), line);
            worst = r;
        }
    }
    return worst;
}
