/* fuzz_key.h: the P-256 key pair of fuzz_jwt, also used by make_seeds to
 * sign the seed tokens. A test key made for these harnesses and used
 * nowhere else: it signs nothing that matters. */
#ifndef SL_FUZZ_KEY_H
#define SL_FUZZ_KEY_H

static const char private_pem[] =
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MHcCAQEEIMl3EUqDm6HY6/CgE0QeM/MkKFiAsdO5d1W3D0wIJo8XoAoGCCqGSM49\n"
    "AwEHoUQDQgAEGWZHVnoCyu6dg1+icgrpkMdIaG6UTOrJFp53zi8s4cZdn4iT/LmD\n"
    "rrskOz9sKX3+lqmd33oNssTxfa2vx+SSng==\n"
    "-----END EC PRIVATE KEY-----\n";

static const char public_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEGWZHVnoCyu6dg1+icgrpkMdIaG6U\n"
    "TOrJFp53zi8s4cZdn4iT/LmDrrskOz9sKX3+lqmd33oNssTxfa2vx+SSng==\n"
    "-----END PUBLIC KEY-----\n";

#endif
