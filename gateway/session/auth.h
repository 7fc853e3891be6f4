/* auth: who a connecting client is.
 *
 * With --auth jwt the token is verified with the configured key, and the
 * algorithm is pinned by that key: HS256 for --jwt-secret, RS256 or ES256
 * for an RSA or EC --jwt-public-key; "none" and any other algorithm are
 * refused (libjwt accepts alg none with a NULL key). libjwt does
 * not check exp, so it is checked here, and required. sub is the account
 * and must be a valid account id.
 *
 * HS256, the common case and the one every connect of a storm pays, is
 * verified here without libjwt, whose one-shot HMAC fetches the digest and
 * builds a BIO per token (a large share of a connect, BENCHMARKS.md). The
 * key is set into an HMAC context once. */
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
};

/* Loads the key from the secret or the PEM file. Returns 0, or -1 with a
 * reason in err. */
int auth_init(struct auth *a, const char *secret, const char *public_key_file, char *err,
              size_t errlen);

/* Verifies token at Unix time now. On success returns 0, writes the account
 * id (NUL-terminated) into account and its exp into *exp. Otherwise returns
 * -1 with a short reason for the log. */
int auth_verify(const struct auth *a, const char *token, size_t token_len, int64_t now,
                char account[ACCOUNT_ID_MAX + 1], int64_t *exp, const char **reason);

void auth_free(struct auth *a);

#endif
