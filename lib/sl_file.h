/* sl_file: the few things Sluice does with the files an operator hands it
 * (rules, policy, key and certificate files, API key hashes, secrets): read
 * one whole, bounded, and tell whether it changed since it was last read,
 * so that a service can load it again without a restart (Kubernetes updates
 * a mounted Secret or ConfigMap by swapping a symlink; the stamp follows
 * the link and sees the new file).
 *
 * Pure apart from the file system; thread-safe. */
#ifndef SL_FILE_H
#define SL_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_FILE_MAX (4 << 20)

/* The whole file, NUL-terminated (*len without the NUL), or NULL with err
 * set to "<path>: <reason>" (missing, unreadable, larger than max). */
char *sl_file_read(const char *path, size_t max, size_t *len, char *err, size_t errlen);

/* What identifies one version of a file: device, inode, size, mtime. */
typedef struct sl_file_stamp {
    uint64_t dev, ino;
    int64_t size, mtime_ns;
} sl_file_stamp;

/* Fills st for path (following symlinks); false when it cannot be stat'ed. */
bool sl_file_stamp_of(const char *path, sl_file_stamp *st);

/* True when path's stamp differs from *st (a file that cannot be stat'ed
 * now has not changed: it is kept until a readable one replaces it). */
bool sl_file_changed(const char *path, const sl_file_stamp *st);

#endif
