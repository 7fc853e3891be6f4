#include "auth.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads the whole PEM file; the key type decides the pinned algorithm. */
static int load_public_key(struct auth *a, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    EVP_PKEY *pkey = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    if (!pkey) {
        fclose(f);
        snprintf(err, errlen, "%s is not a PEM public key", path);
        return -1;
    }
    int type = EVP_PKEY_base_id(pkey);
    EVP_PKEY_free(pkey);
    if (type == EVP_PKEY_RSA)
        a->alg = JWT_ALG_RS256;
    else if (type == EVP_PKEY_EC)
        a->alg = JWT_ALG_ES256;
    else {
        fclose(f);
        snprintf(err, errlen, "%s: only RSA (RS256) and EC (ES256) keys are supported", path);
        return -1;
    }
    rewind(f);
    size_t cap = 4096, len = 0;
    unsigned char *buf = malloc(cap + 1);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            unsigned char *bigger = cap < (1 << 20) ? realloc(buf, cap * 2 + 1) : NULL;
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) {
        snprintf(err, errlen, "%s: too large or out of memory", path);
        return -1;
    }
    buf[len] = '\0';
    a->key = buf;
    a->key_len = len;
    return 0;
}

int auth_init(struct auth *a, const char *secret, const char *public_key_file, char *err,
              size_t errlen)
{
    memset(a, 0, sizeof(*a));
    if (public_key_file)
        return load_public_key(a, public_key_file, err, errlen);
    if (!secret || !*secret) {
        snprintf(err, errlen, "no JWT key configured");
        return -1;
    }
    a->key_len = strlen(secret);
    a->key = (unsigned char *)strdup(secret);
    a->alg = JWT_ALG_HS256;
    if (!a->key) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int auth_verify(const struct auth *a, const char *token, size_t token_len, int64_t now,
                char account[ACCOUNT_ID_MAX + 1], int64_t *exp, const char **reason)
{
    /* libjwt wants a C string; tokens are bounded by the header buffer. */
    char buf[8192];
    if (token_len == 0) {
        *reason = "missing token";
        return -1;
    }
    if (token_len >= sizeof(buf)) {
        *reason = "token too long";
        return -1;
    }
    memcpy(buf, token, token_len);
    buf[token_len] = '\0';
    if (!a->key) {
        *reason = "no key configured";
        return -1;
    }
    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, buf, a->key, (int)a->key_len) != 0 || !jwt) {
        *reason = "bad signature or malformed token";
        return -1;
    }
    int rc = -1;
    if (jwt_get_alg(jwt) != a->alg) {
        *reason = "algorithm not allowed";
        goto out;
    }
    errno = 0;
    long e = jwt_get_grant_int(jwt, "exp");
    if (errno != 0) {
        *reason = "missing or non-numeric exp";
        goto out;
    }
    if (e <= now) {
        *reason = "token expired";
        goto out;
    }
    const char *sub = jwt_get_grant(jwt, "sub");
    if (!sub) {
        *reason = "missing sub";
        goto out;
    }
    size_t sub_len = strlen(sub);
    if (!validate_account_id(sub, sub_len)) {
        *reason = "sub is not a valid account id";
        goto out;
    }
    memcpy(account, sub, sub_len + 1);
    *exp = e;
    rc = 0;
out:
    jwt_free(jwt);
    return rc;
}

void auth_free(struct auth *a)
{
    free(a->key);
    a->key = NULL;
}
