/* sl_nkey: see sl_nkey.h. */
#include "sl_nkey.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

#define PREFIX_SEED (18 << 3) /* 'S' */
#define PREFIX_USER (20 << 3) /* 'U' */
#define RAW_LEN 32
#define SEED_BYTES (2 + RAW_LEN + 2)   /* two prefix bytes, seed, CRC */
#define PUBLIC_BYTES (1 + RAW_LEN + 2) /* prefix byte, key, CRC */

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static uint16_t crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

/* Decodes exactly n bytes from text (base32, no padding); false on a
 * character outside the alphabet or text of another length. */
static bool base32_decode(const char *text, size_t textlen, uint8_t *out, size_t n)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t at = 0;

    if (textlen != (n * 8 + 4) / 5)
        return false;
    for (size_t i = 0; i < textlen; i++) {
        const char *c = memchr(alphabet, text[i], 32);
        if (c == NULL || text[i] == '\0')
            return false;
        acc = (acc << 5) | (uint32_t)(c - alphabet);
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            if (at < n)
                out[at++] = (uint8_t)(acc >> bits);
        }
    }
    return at == n;
}

static void base32_encode(const uint8_t *in, size_t n, char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t at = 0;

    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[at++] = alphabet[(acc >> bits) & 31];
        }
    }
    if (bits > 0)
        out[at++] = alphabet[(acc << (5 - bits)) & 31];
    out[at] = '\0';
}

/* The Ed25519 public key of a raw 32-byte seed, by OpenSSL. */
static bool ed25519_public(const uint8_t seed[RAW_LEN], uint8_t pub[RAW_LEN])
{
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, RAW_LEN);
    size_t len = RAW_LEN;
    bool ok = k != NULL && EVP_PKEY_get_raw_public_key(k, pub, &len) == 1 && len == RAW_LEN;

    EVP_PKEY_free(k);
    return ok;
}

bool sl_nkey_user_public(const char *seed, char *out, size_t outlen)
{
    uint8_t raw[SEED_BYTES], key[PUBLIC_BYTES];
    uint16_t crc;
    bool ok = false;

    if (seed == NULL || outlen < SL_NKEY_PUBLIC_LEN + 1 ||
        !base32_decode(seed, strnlen(seed, SL_NKEY_SEED_LEN + 1), raw, SEED_BYTES))
        return false;
    crc = (uint16_t)(raw[SEED_BYTES - 2] | raw[SEED_BYTES - 1] << 8);
    /* Byte 0: the seed prefix and the top of the kind; byte 1: the rest. */
    if (crc == crc16(raw, SEED_BYTES - 2) && (raw[0] & 0xF8) == PREFIX_SEED &&
        (uint8_t)(((raw[0] & 7) << 5) | (raw[1] >> 3)) == PREFIX_USER) {
        key[0] = PREFIX_USER;
        ok = ed25519_public(raw + 2, key + 1);
    }
    OPENSSL_cleanse(raw, sizeof(raw));
    if (!ok)
        return false;
    crc = crc16(key, 1 + RAW_LEN);
    key[1 + RAW_LEN] = (uint8_t)(crc & 0xFF);
    key[2 + RAW_LEN] = (uint8_t)(crc >> 8);
    base32_encode(key, PUBLIC_BYTES, out);
    return true;
}

static bool seed_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7');
}

const char *sl_nkey_find_seed(const char *text, size_t *len)
{
    const char *line = text;

    while (line != NULL && *line != '\0') {
        const char *p = line, *start;
        while (*p == ' ' || *p == '\t')
            p++;
        start = p;
        while (seed_char(*p))
            p++;
        if (p - start == SL_NKEY_SEED_LEN && strncmp(start, "SU", 2) == 0) {
            const char *q = p;
            while (*q != '\0' && *q != '\n' && isspace((unsigned char)*q))
                q++;
            if (*q == '\0' || *q == '\n') {
                *len = SL_NKEY_SEED_LEN;
                return start;
            }
        }
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    return NULL;
}
