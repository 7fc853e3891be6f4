/* libFuzzer target: auth_verify (gateway/session/auth.c), the token of every
 * connecting client and of every refresh message, with an HS256 secret, an
 * RSA (RS256) or an EC (ES256) public key.
 *
 * The first byte picks a mode (its low 2 bits) and a key (the next 2: 0
 * HS256, 1 RS256, 2 ES256, 3 HS256 again); the rest is the input:
 *   0: the bytes are the token as sent by a client;
 *   1: the bytes are a JSON claims object, signed with the right key, so
 *      the checks after the signature (exp, sub) are reached;
 *   2: the same claims signed with another key of the same kind: must be
 *      refused;
 *   3: the same claims with alg "none": must be refused.
 *
 * Tokens are read by our own code, not libjwt's, for every algorithm, so
 * every verdict is also checked against a reference built on libjwt
 * (jwt_decode and its grants): whatever auth_verify accepts, the reference
 * accepts with the same account and exp; for tokens libjwt itself signed
 * (mode 1), the reverse too. The RSA and EC keys are generated at start. */
#include <errno.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "validate.h"

#define NOW 1700000000LL

static const char SECRET[] = "fuzz-secret-0123456789";

/* One configuration under test: its auth, and what libjwt needs to sign
 * with the right key and with another one, and to verify. */
struct keyset {
    jwt_alg_t alg;
    struct auth auth;
    const char *sign_key, *other_key; /* secret or private PEM */
    const char *verify_key;           /* secret or public PEM */
};
static struct keyset KS[3];
static int ready;

/* The reference verdict: libjwt decodes and checks the signature, then
 * the claim rules of auth.h. A sub with a NUL inside counts as invalid
 * (libjwt's C string would end at it). Returns 0 and fills account/exp, or
 * -1. */
static int reference(const struct keyset *k, const char *token, size_t len, char *account,
                     int64_t *exp)
{
    char *buf = malloc(len + 1);
    if (!buf)
        abort();
    memcpy(buf, token, len);
    buf[len] = '\0';
    jwt_t *jwt = NULL;
    int rc = -1;
    if (strlen(buf) != len ||
        jwt_decode(&jwt, buf, (const unsigned char *)k->verify_key, (int)strlen(k->verify_key)) !=
            0 ||
        !jwt)
        goto out;
    if (jwt_get_alg(jwt) != k->alg)
        goto out;
    errno = 0;
    long e = jwt_get_grant_int(jwt, "exp");
    const char *sub = jwt_get_grant(jwt, "sub");
    char *sub_json = jwt_get_grants_json(jwt, "sub");
    int nul = sub_json && strstr(sub_json, "\\u0000");
    free(sub_json);
    if (errno != 0 || e <= NOW || !sub || nul || !validate_account_id(sub, strlen(sub)))
        goto out;
    memcpy(account, sub, strlen(sub) + 1);
    *exp = e;
    rc = 0;
out:
    jwt_free(jwt);
    free(buf);
    return rc;
}

static void check(const struct keyset *k, const char *token, size_t len, int must_fail,
                  int must_agree)
{
    char account[ACCOUNT_ID_MAX + 1];
    memset(account, 'x', sizeof(account));
    int64_t exp = -1;
    const char *reason = NULL;
    int rc = auth_verify(&k->auth, token, len, NOW, account, &exp, &reason);
    char ref_account[ACCOUNT_ID_MAX + 1];
    int64_t ref_exp = -1;
    int ref = reference(k, token, len, ref_account, &ref_exp);
    if (rc == 0) {
        if (must_fail)
            abort();
        size_t alen = strnlen(account, sizeof(account));
        if (alen == sizeof(account) || !validate_account_id(account, alen) || exp <= NOW)
            abort();
        if (ref != 0 || strcmp(account, ref_account) != 0 || exp != ref_exp)
            abort(); /* we accepted what libjwt refuses, or read it differently */
    } else {
        if (rc != -1 || !reason || !reason[0])
            abort();
        if (must_agree && ref == 0)
            abort(); /* libjwt's own token, valid by the rules, refused */
    }
}

/* Signs the claims with alg and key; NULL when libjwt refuses the claims. */
static char *sign(const char *claims, jwt_alg_t alg, const char *key)
{
    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0)
        return NULL;
    char *out = NULL;
    if (jwt_add_grants_json(jwt, claims) == 0 &&
        jwt_set_alg(jwt, alg, (const unsigned char *)key, key ? (int)strlen(key) : 0) == 0)
        out = jwt_encode_str(jwt);
    jwt_free(jwt);
    return out;
}

static char *pem(EVP_PKEY *key, int private)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || !(private ? PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL)
                        : PEM_write_bio_PUBKEY(b, key)))
        abort();
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(b);
    if (!s)
        abort();
    return s;
}

/* A key pair of alg's kind: auth_init reads the public half from a file. */
static void keyset_pem(struct keyset *k, jwt_alg_t alg)
{
    EVP_PKEY *key = alg == JWT_ALG_RS256 ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    EVP_PKEY *other = alg == JWT_ALG_RS256 ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    if (!key || !other)
        abort();
    k->alg = alg;
    k->sign_key = pem(key, 1);
    k->other_key = pem(other, 1);
    k->verify_key = pem(key, 0);
    char path[] = "/tmp/fuzz_auth.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, k->verify_key, strlen(k->verify_key)) < 0 || close(fd) != 0)
        abort();
    char err[256];
    if (auth_init(&k->auth, NULL, path, err, sizeof(err)) != 0 || k->auth.alg != alg)
        abort();
    unlink(path);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

static void keys_init(void)
{
    char err[128];
    KS[0].alg = JWT_ALG_HS256;
    KS[0].sign_key = KS[0].verify_key = SECRET;
    KS[0].other_key = "another-secret";
    if (auth_init(&KS[0].auth, SECRET, NULL, err, sizeof(err)) != 0)
        abort();
    keyset_pem(&KS[1], JWT_ALG_RS256);
    keyset_pem(&KS[2], JWT_ALG_ES256);
    ready = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready)
        keys_init();
    if (size < 1)
        return 0;
    int mode = data[0] & 3;
    const struct keyset *k = &KS[((data[0] >> 2) & 3) % 3];
    data++;
    size--;
    if (mode == 0) {
        /* exact-size copy: auth_verify must not read past token_len */
        char *tok = malloc(size ? size : 1);
        if (!tok)
            return 0;
        memcpy(tok, data, size);
        check(k, tok, size, 0, 0);
        free(tok);
        return 0;
    }
    if (size > 2048)
        return 0;
    char *claims = malloc(size + 1);
    if (!claims)
        return 0;
    memcpy(claims, data, size);
    claims[size] = '\0';
    char *tok = mode == 1   ? sign(claims, k->alg, k->sign_key)
                : mode == 2 ? sign(claims, k->alg, k->other_key)
                            : sign(claims, JWT_ALG_NONE, NULL);
    if (tok) {
        check(k, tok, strlen(tok), mode != 1, mode == 1);
        if (mode == 1) {
            /* cut anywhere: never accepted as a different token */
            size_t n = strlen(tok);
            check(k, tok, n / 2, 1, 0);
            check(k, tok, n - 1, 1, 0);
        }
        free(tok);
    }
    free(claims);
    return 0;
}
