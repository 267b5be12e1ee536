/* sl_nats: how every Sluice service reaches NATS, apart from what it does
 * there.
 *
 * Servers. NATS_URL (--nats-url) is one URL or a comma-separated list of
 * them, as natscli and the other NATS clients take it:
 *
 *     nats://nats-0.nats:4222,nats://nats-1.nats:4222,nats://nats-2.nats:4222
 *
 * Each entry may carry user and password (nats://user:pass@host:4222). The
 * list is handed to cnats as a server list (natsOptions_SetServers), so the
 * connection starts on any member that answers and, after a disconnect,
 * reconnects to any member, including those the cluster announces later.
 * sl_nats_servers_parse splits and checks it; sl_nats_url_redact gives the
 * form that may be logged: a password becomes "***", so a URL with
 * credentials never reaches a log line or an error message.
 *
 * Everything here is pure and thread-safe; the caller owns what it passes in
 * and what it gets back. */
#ifndef SL_NATS_H
#define SL_NATS_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>

/* The longest list sl_nats_servers_parse takes. */
#define SL_NATS_MAX_SERVERS 32

/* A parsed server list: urls[0..n) point into one buffer, all owned here. */
typedef struct sl_nats_servers {
    char *buf;
    const char *urls[SL_NATS_MAX_SERVERS];
    int n;
} sl_nats_servers;

/* Splits list at commas, trimming blanks. Each entry must be
 * [nats|tls|ws|wss]://[user[:password]@]host[:port] or host[:port]. Returns
 * false with err set to one line (which names the entry in its redacted
 * form) when the list is empty or an entry is not a server URL; then out
 * holds nothing to free. */
bool sl_nats_servers_parse(const char *list, sl_nats_servers *out, char *err, size_t errlen);
void sl_nats_servers_free(sl_nats_servers *s);

/* Writes url (or a whole comma-separated list) into out with every password
 * replaced by "***". A user name alone stays: it names, it does not open. */
void sl_nats_url_redact(const char *url, char *out, size_t outlen);

/* Sets the servers of list on opts, in order. The caller checked list with
 * sl_nats_servers_parse before; NATS_INVALID_ARG if it does not parse. */
natsStatus sl_nats_options_set_servers(natsOptions *opts, const char *list);

#endif
