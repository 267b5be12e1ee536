/* sl_file: see sl_file.h. */
#include "sl_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

char *sl_file_read(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    const char *why = NULL;
    char *buf;

    *len = 0;
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(max + 1);
    if (buf == NULL)
        why = "out of memory";
    else if ((*len = fread(buf, 1, max + 1, f)), ferror(f))
        why = "read error";
    else if (*len > max)
        why = "too large";
    fclose(f);
    if (why != NULL) {
        snprintf(err, errlen, "%s: %s", path, why);
        free(buf);
        *len = 0;
        return NULL;
    }
    buf[*len] = '\0';
    return buf;
}

bool sl_file_stamp_of(const char *path, sl_file_stamp *st)
{
    struct stat sb;

    if (stat(path, &sb) != 0)
        return false;
    st->dev = (uint64_t)sb.st_dev;
    st->ino = (uint64_t)sb.st_ino;
    st->size = (int64_t)sb.st_size;
    st->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    return true;
}

bool sl_file_changed(const char *path, const sl_file_stamp *st)
{
    sl_file_stamp now;

    if (!sl_file_stamp_of(path, &now))
        return false;
    return now.dev != st->dev || now.ino != st->ino || now.size != st->size ||
           now.mtime_ns != st->mtime_ns;
}
