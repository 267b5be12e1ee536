/* sl_nkey: NATS NKeys, as far as a Sluice service needs them: the public
 * key of a user seed.
 *
 * NATS_NKEY names a seed file, as natscli takes it, but cnats wants the
 * public key beside the seed file (natsOptions_SetNKeyFromSeed) and has no
 * public call that derives it. An NKey is text: base32 (RFC 4648, no
 * padding) of a prefix byte naming the key's kind, the raw key and a CRC-16
 * (XMODEM, little-endian) of both. A user seed starts "SU" and holds a
 * 32-byte Ed25519 seed; its public key starts "U" and holds the 32-byte
 * Ed25519 public key, which OpenSSL computes from the seed.
 *
 * Everything here is pure and thread-safe; no key material is kept: the
 * decoded seed lives on the stack of sl_nkey_user_public and is wiped before
 * it returns. */
#ifndef SL_NKEY_H
#define SL_NKEY_H

#include <stdbool.h>
#include <stddef.h>

/* Characters of a user seed ("SU...") and of a public user key ("U..."). */
#define SL_NKEY_SEED_LEN 58
#define SL_NKEY_PUBLIC_LEN 56

/* Writes the public key of the user seed (SL_NKEY_SEED_LEN characters) into
 * out, terminated. False when seed is not a well-formed user seed (wrong
 * length, alphabet, kind or checksum) or outlen is below
 * SL_NKEY_PUBLIC_LEN + 1. */
bool sl_nkey_user_public(const char *seed, char *out, size_t outlen);

/* The first user seed in text (a seed file, or a .creds file with its JWT
 * and seed blocks): a token of SL_NKEY_SEED_LEN characters starting "SU",
 * alone on its line apart from blanks. Returns where it starts (inside
 * text) with *len set, or NULL when there is none. */
const char *sl_nkey_find_seed(const char *text, size_t *len);

#endif
