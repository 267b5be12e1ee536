/* sl_tls: the gRPC port's TLS, and who a client certificate says the caller
 * is.
 *
 * Credentials. SLUICE_TLS_CERT and SLUICE_TLS_KEY (PEM files: the server's
 * certificate chain and its private key) make the port speak TLS only;
 * SLUICE_TLS_CLIENT_CA (PEM) additionally requires a client certificate and
 * verifies it against that CA (mTLS). The files are read at start, checked
 * (the key must belong to the certificate), and read again when any of them
 * changes, without a restart: the gRPC core asks for the configuration on
 * every new connection (the certificate config fetcher), and sl_tls answers
 * with the new files once their stamps (sl_file) change, at most once a
 * second. A change that does not load (a half-written file, a key that does
 * not match) is logged and the previous configuration kept; connections
 * already open keep the certificate they were made with. cert-manager and
 * Kubernetes Secret updates work this way.
 *
 * Identity. sl_tls_identity reads the verified client certificate (the
 * x509_pem_cert property of a call's auth context) and names its subject:
 * the first URI SAN (e.g. a SPIFFE id), else the first DNS SAN, else the
 * subject CN.
 *
 * Threads: the fetcher runs on gRPC's threads, under the sl_tls mutex;
 * everything else is thread-safe. An sl_tls must outlive the server whose
 * credentials it made. */
#ifndef SL_TLS_H
#define SL_TLS_H

#include <grpc/grpc_security.h>
#include <stdbool.h>
#include <stddef.h>

#include "sl_jwt.h" /* SL_PRINCIPAL_MAX */

typedef struct sl_tls sl_tls;

/* Reads and checks the files; client_ca may be NULL or "" (no client
 * certificates). Returns NULL with err set to one line naming the file. */
sl_tls *sl_tls_new(const char *cert, const char *key, const char *client_ca, char *err,
                   size_t errlen);
void sl_tls_free(sl_tls *t);

/* True when client certificates are required and verified. */
bool sl_tls_mutual(const sl_tls *t);

/* Server credentials that reload the files on change; the caller owns them
 * (grpc_server_credentials_release once the port is added). */
grpc_server_credentials *sl_tls_server_credentials(sl_tls *t);

/* The subject a PEM certificate names (see the top); false when it names
 * none that fits in SL_PRINCIPAL_MAX. */
bool sl_tls_identity_from_pem(const char *pem, size_t len, char out[SL_PRINCIPAL_MAX]);

/* The verified client certificate's subject of a call, from its auth
 * context; false when the call came without one. */
bool sl_tls_call_identity(grpc_call *call, char out[SL_PRINCIPAL_MAX]);

#endif
