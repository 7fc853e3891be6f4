/* auth: who a connecting client is.
 *
 * With --auth jwt the token is verified with the configured key, and the
 * algorithm is pinned by that key: HS256 for --jwt-secret, RS256 or ES256
 * for an RSA or EC --jwt-public-key; "none" and any other algorithm are
 * refused. exp is required and checked here; sub is the account and must
 * be a valid account id.
 *
 * Every algorithm goes through the same strict reading (README.md, "Connecting"):
 * unpadded base64url parts, a header whose alg is the pinned one, whose
 * typ (if any) is JWT and which has no crit, and header and claims in
 * which alg, typ, exp or sub appear once, never spelled with escapes. Only
 * the signature check differs, and none goes through libjwt: HS256, the
 * common case and the one every connect of a storm pays, uses an HMAC
 * context keyed once (libjwt's one-shot HMAC fetched the digest and built a
 * BIO per token, a large share of a connect: BENCHMARKS.md); RS256 and ES256 use OpenSSL with the
 * public key parsed once at start-up. */
#ifndef NOTIFY_AUTH_H
#define NOTIFY_AUTH_H

#include <jwt.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "validate.h"

struct auth {
    unsigned char *key; /* secret or PEM bytes */
    size_t key_len;     /* length of key */
    jwt_alg_t alg;      /* the only algorithm accepted */
    EVP_MAC *mac;       /* HS256: HMAC, fetched once */
    EVP_MAC_CTX *hmac;  /* HS256: keyed once; each verify re-initialises it */
    EVP_PKEY *pkey;     /* RS256/ES256: the public key, parsed once */
    EVP_MD *sha256;     /* RS256/ES256: the digest, fetched once */
    size_t sig_len;     /* RS256/ES256: bytes of a signature (ES256: R || S) */
};

/* Loads the key from the secret or the PEM file. Returns 0, or -1 with a
 * reason in err. */
int auth_init(struct auth *a, const char *secret, const char *public_key_file, char *err,
              size_t errlen);

/* Whether path holds a public key auth_init takes (PEM, RSA or EC): 0, or
 * -1 with a reason in err that does not repeat the path. For checking the
 * flag before the daemon starts. */
int auth_check_public_key(const char *path, char *err, size_t errlen);

/* Verifies token at Unix time now. On success returns 0, writes the account
 * id (NUL-terminated) into account and its exp into *exp. Otherwise returns
 * -1 with a short reason for the log. */
int auth_verify(const struct auth *a, const char *token, size_t token_len, int64_t now,
                char account[ACCOUNT_ID_MAX + 1], int64_t *exp, const char **reason);

void auth_free(struct auth *a);

#endif
