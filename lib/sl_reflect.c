/* sl_reflect: see sl_reflect.h. Files number in the tens and symbols in the
 * hundreds, so lookups are linear scans over flat arrays: simple, and far
 * cheaper than the network round trip of any reflection request. */
#include "sl_reflect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"

typedef struct symbol {
    char *name;
    int file;
    bool message;
} symbol;

typedef struct file_entry {
    const Google__Protobuf__FileDescriptorProto *fd;
    uint8_t *bytes;
    size_t len;
} file_entry;

struct sl_reflect {
    Google__Protobuf__FileDescriptorSet *set;
    file_entry *files;
    size_t nfiles;
    symbol *symbols;
    size_t nsymbols, capsymbols;
    const char **services;
    size_t nservices;
};

static bool add_symbol(sl_reflect *r, const char *scope, const char *name, int file, bool msg)
{
    size_t n = strlen(scope) + strlen(name) + 2;
    if (r->nsymbols == r->capsymbols) {
        size_t cap = r->capsymbols ? r->capsymbols * 2 : 64;
        symbol *s = realloc(r->symbols, cap * sizeof(*s));
        if (s == NULL)
            return false;
        r->symbols = s;
        r->capsymbols = cap;
    }
    r->symbols[r->nsymbols].name = malloc(n);
    if (r->symbols[r->nsymbols].name == NULL)
        return false;
    snprintf(r->symbols[r->nsymbols].name, n, "%s%s%s", scope, *scope ? "." : "", name);
    r->symbols[r->nsymbols].file = file;
    r->symbols[r->nsymbols].message = msg;
    r->nsymbols++;
    return true;
}

static bool index_enums(sl_reflect *r, const char *scope, Google__Protobuf__EnumDescriptorProto **e,
                        size_t n, int file)
{
    for (size_t i = 0; i < n; i++) {
        if (!add_symbol(r, scope, e[i]->name, file, false))
            return false;
    }
    return true;
}

static bool index_messages(sl_reflect *r, const char *scope,
                           Google__Protobuf__DescriptorProto **m, size_t n, int file)
{
    for (size_t i = 0; i < n; i++) {
        bool ok;
        if (!add_symbol(r, scope, m[i]->name, file, true))
            return false;
        /* the symbol just added is the scope of what it nests */
        const char *inner = r->symbols[r->nsymbols - 1].name;
        ok = index_messages(r, inner, m[i]->nested_type, m[i]->n_nested_type, file) &&
             index_enums(r, inner, m[i]->enum_type, m[i]->n_enum_type, file);
        if (!ok)
            return false;
    }
    return true;
}

static bool index_file(sl_reflect *r, int f)
{
    const Google__Protobuf__FileDescriptorProto *fd = r->files[f].fd;
    const char *pkg = fd->package ? fd->package : "";

    if (!index_messages(r, pkg, fd->message_type, fd->n_message_type, f) ||
        !index_enums(r, pkg, fd->enum_type, fd->n_enum_type, f))
        return false;
    for (size_t i = 0; i < fd->n_service; i++) {
        const Google__Protobuf__ServiceDescriptorProto *svc = fd->service[i];
        if (!add_symbol(r, pkg, svc->name, f, false))
            return false;
        /* names are allocated one by one: pointers to them outlive any
         * realloc of the symbols array */
        const char *svc_name = r->symbols[r->nsymbols - 1].name;
        const char **grown = realloc(r->services, (r->nservices + 1) * sizeof(char *));
        if (grown == NULL)
            return false;
        r->services = grown;
        r->services[r->nservices++] = svc_name;
        for (size_t m = 0; m < svc->n_method; m++) {
            if (!add_symbol(r, svc_name, svc->method[m]->name, f, false))
                return false;
        }
    }
    r->files[f].len = google__protobuf__file_descriptor_proto__get_packed_size(fd);
    r->files[f].bytes = malloc(r->files[f].len ? r->files[f].len : 1);
    if (r->files[f].bytes == NULL)
        return false;
    google__protobuf__file_descriptor_proto__pack(fd, r->files[f].bytes);
    return true;
}

sl_reflect *sl_reflect_new(const uint8_t *set, size_t len)
{
    sl_reflect *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->set = google__protobuf__file_descriptor_set__unpack(NULL, len, set);
    if (r->set == NULL) {
        free(r);
        return NULL;
    }
    r->nfiles = r->set->n_file;
    r->files = calloc(r->nfiles ? r->nfiles : 1, sizeof(*r->files));
    if (r->files == NULL) {
        sl_reflect_free(r);
        return NULL;
    }
    for (size_t i = 0; i < r->nfiles; i++) {
        r->files[i].fd = r->set->file[i];
        if (!index_file(r, (int)i)) {
            sl_reflect_free(r);
            return NULL;
        }
    }
    return r;
}

void sl_reflect_free(sl_reflect *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nsymbols; i++)
        free(r->symbols[i].name);
    for (size_t i = 0; r->files != NULL && i < r->nfiles; i++)
        free(r->files[i].bytes);
    free(r->symbols);
    free(r->files);
    free(r->services);
    if (r->set != NULL)
        google__protobuf__file_descriptor_set__free_unpacked(r->set, NULL);
    free(r);
}

size_t sl_reflect_services(const sl_reflect *r, const char *const **names)
{
    *names = r->services;
    return r->nservices;
}

int sl_reflect_file_by_name(const sl_reflect *r, const char *name)
{
    for (size_t i = 0; i < r->nfiles; i++) {
        if (strcmp(r->files[i].fd->name, name) == 0)
            return (int)i;
    }
    return -1;
}

static const symbol *find_symbol(const sl_reflect *r, const char *name)
{
    if (name[0] == '.')
        name++;
    for (size_t i = 0; i < r->nsymbols; i++) {
        if (strcmp(r->symbols[i].name, name) == 0)
            return &r->symbols[i];
    }
    return NULL;
}

int sl_reflect_file_by_symbol(const sl_reflect *r, const char *symbol_name)
{
    const symbol *s = find_symbol(r, symbol_name);
    return s ? s->file : -1;
}

bool sl_reflect_is_message(const sl_reflect *r, const char *symbol_name)
{
    const symbol *s = find_symbol(r, symbol_name);
    return s != NULL && s->message;
}

size_t sl_reflect_closure(const sl_reflect *r, int file, int *out, size_t max)
{
    size_t n = 0;
    if (file < 0 || max == 0)
        return 0;
    out[n++] = file;
    /* out doubles as the work queue: each file's dependencies are appended
     * unless already present. */
    for (size_t next = 0; next < n; next++) {
        const Google__Protobuf__FileDescriptorProto *fd = r->files[out[next]].fd;
        for (size_t d = 0; d < fd->n_dependency; d++) {
            int dep = sl_reflect_file_by_name(r, fd->dependency[d]);
            bool seen = dep < 0;
            for (size_t k = 0; k < n && !seen; k++)
                seen = out[k] == dep;
            if (!seen && n < max)
                out[n++] = dep;
        }
    }
    return n;
}

const char *sl_reflect_file_name(const sl_reflect *r, int file)
{
    return r->files[file].fd->name;
}

const uint8_t *sl_reflect_file_bytes(const sl_reflect *r, int file, size_t *len)
{
    *len = r->files[file].len;
    return r->files[file].bytes;
}
