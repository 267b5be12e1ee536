/* sl_nats: how every Sluice service reaches NATS, apart from what it does
 * there: which servers, as whom, over what.
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
 * credentials never reaches a log line or an error message. NATS_URL_FILE
 * (--nats-url-file) gives the same from a file (a Kubernetes Secret).
 *
 * Identity and TLS, with natscli's variable names: NATS_CREDS (a .creds
 * file: user JWT and NKey seed), NATS_NKEY (an NKey seed file), or user and
 * password in NATS_URL; NATS_CA (the CAs that sign the servers'
 * certificates), NATS_CERT and NATS_KEY (a client certificate, when the
 * server verifies them). TLS is on when any of the three is set or a URL is
 * tls://. Each is a flag too (--nats-creds, ...).
 *
 * The three services share this plumbing: sl_nats_options writes the
 * option table entries into a service's table, sl_nats_settings_check
 * checks them once at start (every file read, every PEM parsed, so a bad
 * setting stops the process with one line instead of failing at the first
 * reconnect), and sl_nats_settings_apply sets them on the natsOptions of a
 * connection (sl_js).
 *
 * Parsing and redacting are pure; checking reads the files. All of it is
 * thread-safe; the caller owns what it passes in and what it gets back. */
#ifndef SL_NATS_H
#define SL_NATS_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>

#include "sl_config.h"
#include "sl_nkey.h"

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
 * replaced by "***", and every token too: a user without a password
 * (nats://tok3n@host) is a token to NATS, so "tok3n@" becomes "***@". */
void sl_nats_url_redact(const char *url, char *out, size_t outlen);

/* Sets the servers of list on opts, in order. The caller checked list with
 * sl_nats_servers_parse before; NATS_INVALID_ARG if it does not parse. */
natsStatus sl_nats_options_set_servers(natsOptions *opts, const char *list);

/* ---- settings: servers, identity, TLS ----------------------------------- */

/* How a service reaches NATS. The strings are the option table's (they live
 * as long as the process; "" or NULL = not set); sl_nats_settings_check
 * fills the rest. url_owned (NATS_URL_FILE's content, which url then points
 * to) is owned here: sl_nats_settings_free releases it. */
typedef struct sl_nats_settings {
    const char *url;      /* NATS_URL: server list, maybe with user:password */
    const char *url_file; /* NATS_URL_FILE: the same, read from this file */
    const char *creds;    /* NATS_CREDS: user JWT + seed file */
    const char *nkey;     /* NATS_NKEY: user seed file */
    const char *ca;       /* NATS_CA: PEM CA certificates */
    const char *cert;     /* NATS_CERT: PEM client certificate (chain) */
    const char *key;      /* NATS_KEY: PEM private key of cert */
    bool url_given, url_file_given;

    /* Filled by sl_nats_settings_check. */
    char *url_owned;
    char nkey_public[SL_NKEY_PUBLIC_LEN + 1]; /* of the seed in nkey or creds */
    bool tls;
} sl_nats_settings;

/* The option table entries, pointing into s (for static tables). */
#define SL_NATS_NOPTIONS 7
/* clang-format off */
#define SL_NATS_OPTIONS(s)                                                                          \
    {"nats-url", "NATS_URL", SL_OPT_STRING, "nats://127.0.0.1:4222",                                \
     "NATS server URL(s), comma-separated; user:password@ allowed", &(s).url, 0, 0, &(s).url_given}, \
    {"nats-url-file", "NATS_URL_FILE", SL_OPT_STRING, "",                                           \
     "file holding NATS_URL (e.g. a Kubernetes Secret), read once at start", &(s).url_file, 0, 0,   \
     &(s).url_file_given},                                                                          \
    {"nats-creds", "NATS_CREDS", SL_OPT_STRING, "",                                                 \
     "NATS user credentials file (.creds: user JWT and NKey seed)", &(s).creds, 0, 0, NULL},       \
    {"nats-nkey", "NATS_NKEY", SL_OPT_STRING, "", "NATS user NKey seed file", &(s).nkey, 0, 0,     \
     NULL},                                                                                         \
    {"nats-ca", "NATS_CA", SL_OPT_STRING, "",                                                       \
     "PEM file of the CAs that sign the NATS servers' certificates (TLS on)", &(s).ca, 0, 0, NULL}, \
    {"nats-cert", "NATS_CERT", SL_OPT_STRING, "",                                                   \
     "PEM client certificate for NATS (TLS on; with --nats-key)", &(s).cert, 0, 0, NULL},          \
    {"nats-key", "NATS_KEY", SL_OPT_STRING, "", "PEM private key of --nats-cert", &(s).key, 0, 0,  \
     NULL}
/* clang-format on */

/* Writes the SL_NATS_NOPTIONS entries into o (for tables built at start). */
void sl_nats_options(sl_option *o, sl_nats_settings *s);

/* Checks s once at start: reads NATS_URL_FILE (url then points at its
 * content), parses the server list, reads the credentials (deriving the
 * NKey's public key), loads the TLS files, and says whether TLS is on.
 * Returns false with err set to one line naming the flag, its variable and
 * the file, never a secret; nothing is then left to free. */
bool sl_nats_settings_check(sl_nats_settings *s, char *err, size_t errlen);

/* Sets servers, credentials and TLS of checked settings on opts. */
natsStatus sl_nats_settings_apply(const sl_nats_settings *s, natsOptions *opts);

/* One line for the log on how checked settings connect, with nothing
 * secret: "servers nats://bob:***@h:4222; credentials: NKey UAB...; TLS
 * (CA /etc/nats/ca.pem, client certificate /etc/nats/tls.crt)". */
void sl_nats_settings_describe(const sl_nats_settings *s, char *out, size_t outlen);

/* True when the settings carry no credentials at all. */
bool sl_nats_settings_anonymous(const sl_nats_settings *s);

void sl_nats_settings_free(sl_nats_settings *s);

/* ---- the library ---------------------------------------------------------- */

/* Releases cnats (nats_Close) at the end of a process, after every
 * connection is destroyed; what every service calls instead of nats_Close.
 * It also works around a cnats 3.x defect (nats.c issue #904): once TLS was
 * used, cnats' exit-time cleanup frees OpenSSL's list of compression
 * methods without telling OpenSSL, whose own exit-time cleanup then frees
 * it again and crashes the process after a clean stop. The list is taken
 * away from OpenSSL here (and kept, reachable, until the process ends), so
 * that neither cleanup finds it. Call once, from the main thread. */
void sl_nats_close(void);

#endif
