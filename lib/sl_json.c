/* sl_json: see sl_json.h.
 *
 * The grammar, from RFC 8259:
 *
 *     value  = object / array / string / number / "true" / "false" / "null"
 *     object = "{" [ string ":" value *( "," string ":" value ) ] "}"
 *     array  = "[" [ value *( "," value ) ] "]"
 *     number = [ "-" ] ( "0" / [1-9] *DIGIT ) [ "." 1*DIGIT ]
 *              [ ( "e" / "E" ) [ "+" / "-" ] 1*DIGIT ]
 *     string = '"' *( unescaped / "\" ( ["\/bfnrt] / "u" 4HEXDIG ) ) '"'
 *              (unescaped: anything but '"', '\' and U+0000 to U+001F)
 *
 * with whitespace (space, tab, LF, CR) around every token. The reader loops
 * between two states: a value is expected (an opening bracket pushes, a
 * scalar is read whole), and a value just ended (a closing bracket pops, a
 * comma expects the next element). */
#include "sl_json.h"

#include <stdio.h>
#include <string.h>

typedef struct scan {
    const uint8_t *start, *p, *end;
    char *why;
    size_t whylen;
} scan;

static bool fault(scan *s, const char *what)
{
    snprintf(s->why, s->whylen, "byte %zu: %s", (size_t)(s->p - s->start), what);
    return false;
}

static bool at(const scan *s, uint8_t c)
{
    return s->p < s->end && *s->p == c;
}

static bool at_digit(const scan *s)
{
    return s->p < s->end && *s->p >= '0' && *s->p <= '9';
}

static void skip_space(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static bool is_hex(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool read_string(scan *s)
{
    s->p++; /* the opening quote */
    while (s->p < s->end) {
        uint8_t c = *s->p;
        if (c == '"') {
            s->p++;
            return true;
        }
        if (c < 0x20)
            return fault(s, "a control character in a string must be escaped");
        if (c != '\\') {
            s->p++;
            continue;
        }
        s->p++;
        if (at(s, 'u')) {
            for (int i = 0; i < 4; i++) {
                s->p++;
                if (s->p >= s->end || !is_hex(*s->p))
                    return fault(s, "\\u must be followed by four hex digits");
            }
        } else if (s->p >= s->end || memchr("\"\\/bfnrt", *s->p, 8) == NULL) {
            return fault(s, "invalid escape in a string");
        }
        s->p++;
    }
    return fault(s, "unterminated string");
}

static bool read_digits(scan *s)
{
    if (!at_digit(s))
        return fault(s, "a digit expected in a number");
    while (at_digit(s))
        s->p++;
    return true;
}

static bool read_number(scan *s)
{
    if (at(s, '-'))
        s->p++;
    if (at(s, '0'))
        s->p++;
    else if (!at_digit(s))
        return fault(s, "expected a value");
    else if (!read_digits(s))
        return false;
    if (at(s, '.')) {
        s->p++;
        if (!read_digits(s))
            return false;
    }
    if (at(s, 'e') || at(s, 'E')) {
        s->p++;
        if (at(s, '+') || at(s, '-'))
            s->p++;
        if (!read_digits(s))
            return false;
    }
    return true;
}

static bool read_word(scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return fault(s, "expected a value");
    s->p += n;
    return true;
}

static bool read_scalar(scan *s)
{
    if (s->p >= s->end)
        return fault(s, "expected a value");
    switch (*s->p) {
    case '"':
        return read_string(s);
    case 't':
        return read_word(s, "true");
    case 'f':
        return read_word(s, "false");
    case 'n':
        return read_word(s, "null");
    default:
        return read_number(s);
    }
}

/* The key and colon of an object member. */
static bool read_key(scan *s)
{
    skip_space(s);
    if (!at(s, '"'))
        return fault(s, "expected a string key");
    if (!read_string(s))
        return false;
    skip_space(s);
    if (!at(s, ':'))
        return fault(s, "expected ':'");
    s->p++;
    return true;
}

static bool read_value(scan *s)
{
    uint8_t open[SL_JSON_MAX_DEPTH]; /* '{' or '[' of each open bracket */
    size_t depth = 0;

    for (;;) {
        /* A value is expected. */
        skip_space(s);
        if (at(s, '{') || at(s, '[')) {
            if (depth == SL_JSON_MAX_DEPTH)
                return fault(s, "nested too deeply");
            open[depth++] = *s->p++;
            skip_space(s);
            if (!at(s, open[depth - 1] == '{' ? '}' : ']')) {
                if (open[depth - 1] == '{' && !read_key(s))
                    return false;
                continue; /* to its first element */
            }
            s->p++; /* empty */
            depth--;
        } else if (!read_scalar(s)) {
            return false;
        }
        /* A value ended: close brackets, or go to the next element. */
        for (;;) {
            skip_space(s);
            if (depth == 0)
                return true;
            if (at(s, open[depth - 1] == '{' ? '}' : ']')) {
                s->p++;
                depth--;
            } else if (at(s, ',')) {
                s->p++;
                if (open[depth - 1] == '{' && !read_key(s))
                    return false;
                break;
            } else {
                return fault(s, open[depth - 1] == '{' ? "expected ',' or '}'"
                                                       : "expected ',' or ']'");
            }
        }
    }
}

bool sl_json_valid(const uint8_t *text, size_t len, char *why, size_t whylen)
{
    static const uint8_t empty[1];
    scan s;

    if (len == 0)
        text = empty; /* text may then be NULL, and NULL + 0 is undefined */
    s = (scan){text, text, text + len, why, whylen};
    if (!read_value(&s))
        return false;
    skip_space(&s);
    if (s.p != s.end)
        return fault(&s, "more than one JSON value");
    return true;
}
