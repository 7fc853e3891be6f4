/* Unit tests of gateway/auth: JWT verification with a pinned algorithm.
 *
 * Tokens are minted with libjwt (or by hand for alg "none"); RSA, EC and
 * Ed25519 keys are generated at run time with the OpenSSL API, their public
 * halves written as PEM files into a temp dir. */
#include <check.h>
#include <dirent.h>
#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"

#define SECRET "s3cret-for-unit-tests"

static char tmpdir[64];
/* PEM texts of the generated keys, and the public ones' file paths. */
static char *rsa_priv, *rsa_pub, *ec_priv, *ec_pub;
/* The same private keys, for signing tokens by hand. */
static EVP_PKEY *rsa_key, *ec_key;
static char rsa_pub_path[128], ec_pub_path[128], ed_pub_path[128], junk_path[128];
static int64_t now;

static char *pem_private(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || !PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL))
        return NULL;
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

static char *pem_public(EVP_PKEY *k, const char *path)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || !PEM_write_bio_PUBKEY(b, k))
        return NULL;
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(b);
    FILE *f = fopen(path, "w");
    if (!f || fputs(s, f) < 0 || fclose(f) != 0)
        return NULL;
    return s;
}

static int make_keys(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_auth.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(rsa_pub_path, sizeof(rsa_pub_path), "%s/rsa.pub.pem", tmpdir);
    snprintf(ec_pub_path, sizeof(ec_pub_path), "%s/ec.pub.pem", tmpdir);
    snprintf(ed_pub_path, sizeof(ed_pub_path), "%s/ed.pub.pem", tmpdir);
    snprintf(junk_path, sizeof(junk_path), "%s/junk.pem", tmpdir);
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!rsa || !ec || !ed)
        return -1;
    rsa_priv = pem_private(rsa);
    rsa_pub = pem_public(rsa, rsa_pub_path);
    ec_priv = pem_private(ec);
    ec_pub = pem_public(ec, ec_pub_path);
    char *ed_pub = pem_public(ed, ed_pub_path);
    rsa_key = rsa;
    ec_key = ec;
    EVP_PKEY_free(ed);
    if (!rsa_priv || !rsa_pub || !ec_priv || !ec_pub || !ed_pub)
        return -1;
    free(ed_pub);
    FILE *f = fopen(junk_path, "w");
    if (!f)
        return -1;
    fputs("-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n", f);
    fclose(f);
    return 0;
}

static void remove_keys(void)
{
    unlink(rsa_pub_path);
    unlink(ec_pub_path);
    unlink(ed_pub_path);
    unlink(junk_path);
    rmdir(tmpdir);
}

/* Mints a token signed with alg and key (key_len 0: strlen). sub NULL:
 * omitted; exp 0: omitted. */
static char *mint(jwt_alg_t alg, const char *key, size_t key_len, const char *sub, long exp)
{
    jwt_t *j = NULL;
    ck_assert_int_eq(jwt_new(&j), 0);
    if (sub)
        ck_assert_int_eq(jwt_add_grant(j, "sub", sub), 0);
    if (exp)
        ck_assert_int_eq(jwt_add_grant_int(j, "exp", exp), 0);
    ck_assert_int_eq(
        jwt_set_alg(j, alg, (const unsigned char *)key, (int)(key_len ? key_len : strlen(key))), 0);
    char *t = jwt_encode_str(j);
    ck_assert_ptr_nonnull(t);
    jwt_free(j);
    return t;
}

static char *b64url(const char *in)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = strlen(in);
    char *out = malloc(n * 4 / 3 + 4);
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)in;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = tbl[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = tbl[v & 63];
    }
    out[o] = '\0';
    return out;
}

/* header.payload. with the given header and payload JSON, no signature. */
static char *hand_token(const char *header, const char *payload, const char *sig)
{
    char *h = b64url(header), *p = b64url(payload);
    char *t = NULL;
    ck_assert_int_gt(asprintf(&t, "%s.%s.%s", h, p, sig), 0);
    free(h);
    free(p);
    return t;
}

/* auth_verify's result; account and reason are returned through the
 * pointers when not NULL. */
static int verify(const struct auth *a, const char *token, char *account, const char **reason)
{
    char acct[ACCOUNT_ID_MAX + 1] = "";
    int64_t exp = -1;
    const char *why = NULL;
    int rc = auth_verify(a, token, strlen(token), now, acct, &exp, &why);
    if (rc == 0) {
        ck_assert_int_gt(exp, now);
    } else {
        ck_assert_ptr_nonnull(why); /* a reason is always given */
    }
    if (account)
        strcpy(account, acct);
    if (reason)
        *reason = why;
    return rc;
}

static void init_secret(struct auth *a)
{
    char err[256] = "";
    ck_assert_int_eq(auth_init(a, SECRET, NULL, err, sizeof(err)), 0);
    ck_assert_int_eq(a->alg, JWT_ALG_HS256);
}

static void init_pem(struct auth *a, const char *path, jwt_alg_t want)
{
    char err[256] = "";
    ck_assert_msg(auth_init(a, NULL, path, err, sizeof(err)) == 0, "auth_init: %s", err);
    ck_assert_int_eq(a->alg, want);
}

START_TEST(hs256_good)
{
    struct auth a;
    init_secret(&a);
    char *t = mint(JWT_ALG_HS256, SECRET, 0, "u42", now + 60);
    char acct[ACCOUNT_ID_MAX + 1];
    int64_t exp = 0;
    const char *why = NULL;
    ck_assert_int_eq(auth_verify(&a, t, strlen(t), now, acct, &exp, &why), 0);
    ck_assert_str_eq(acct, "u42");
    ck_assert_int_eq(exp, now + 60);
    /* the token need not be NUL-terminated: only token_len bytes count */
    size_t n = strlen(t);
    char *padded = malloc(n + 8);
    memcpy(padded, t, n);
    memcpy(padded + n, "garbage", 8);
    ck_assert_int_eq(auth_verify(&a, padded, n, now, acct, &exp, &why), 0);
    ck_assert_str_eq(acct, "u42");
    free(padded);
    /* every allowed character of an account id */
    char *t2 = mint(JWT_ALG_HS256, SECRET, 0, "A-z_0.9@x:y", now + 1);
    ck_assert_int_eq(verify(&a, t2, acct, NULL), 0);
    ck_assert_str_eq(acct, "A-z_0.9@x:y");
    free(t);
    free(t2);
    auth_free(&a);
}
END_TEST

START_TEST(expired)
{
    struct auth a;
    init_secret(&a);
    const char *why;
    char *t = mint(JWT_ALG_HS256, SECRET, 0, "u42", now - 1);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    ck_assert_ptr_nonnull(strstr(why, "expired"));
    free(t);
    /* exp == now is already expired */
    t = mint(JWT_ALG_HS256, SECRET, 0, "u42", now);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    auth_free(&a);
}
END_TEST

START_TEST(exp_missing_or_not_a_number)
{
    struct auth a;
    init_secret(&a);
    const char *why;
    char *t = mint(JWT_ALG_HS256, SECRET, 0, "u42", 0);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    ck_assert_ptr_nonnull(strstr(why, "exp"));
    free(t);
    /* exp as a string */
    jwt_t *j = NULL;
    ck_assert_int_eq(jwt_new(&j), 0);
    char grants[128];
    snprintf(grants, sizeof(grants), "{\"sub\":\"u42\",\"exp\":\"%lld\"}", (long long)now + 60);
    ck_assert_int_eq(jwt_add_grants_json(j, grants), 0);
    ck_assert_int_eq(
        jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
    t = jwt_encode_str(j);
    jwt_free(j);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    auth_free(&a);
}
END_TEST

START_TEST(wrong_secret)
{
    struct auth a;
    init_secret(&a);
    const char *why;
    char *t = mint(JWT_ALG_HS256, "another-secret", 0, "u42", now + 60);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    /* a tampered payload with the original signature */
    t = mint(JWT_ALG_HS256, SECRET, 0, "u42", now + 60);
    char *dot1 = strchr(t, '.'), *dot2 = strrchr(t, '.');
    char *forged_payload = NULL;
    char payload[128];
    snprintf(payload, sizeof(payload), "{\"sub\":\"u43\",\"exp\":%lld}", (long long)now + 60);
    forged_payload = b64url(payload);
    char *forged = NULL;
    ck_assert_int_gt(asprintf(&forged, "%.*s.%s%s", (int)(dot1 - t), t, forged_payload, dot2), 0);
    ck_assert_int_eq(verify(&a, forged, NULL, NULL), -1);
    free(forged);
    free(forged_payload);
    free(t);
    auth_free(&a);
}
END_TEST

START_TEST(alg_none_refused)
{
    struct auth a;
    init_secret(&a);
    char payload[128];
    snprintf(payload, sizeof(payload), "{\"sub\":\"u42\",\"exp\":%lld}", (long long)now + 60);
    const char *why;
    char *t = hand_token("{\"alg\":\"none\"}", payload, "");
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    t = hand_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, "");
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    /* alg none with some signature bytes */
    t = hand_token("{\"alg\":\"none\"}", payload, "c2ln");
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    /* also against a public-key configuration */
    struct auth r;
    init_pem(&r, rsa_pub_path, JWT_ALG_RS256);
    t = hand_token("{\"alg\":\"none\"}", payload, "");
    ck_assert_int_eq(verify(&r, t, NULL, &why), -1);
    free(t);
    auth_free(&r);
    auth_free(&a);
}
END_TEST

START_TEST(hs512_refused)
{
    struct auth a;
    init_secret(&a);
    const char *why;
    char *t = mint(JWT_ALG_HS512, SECRET, 0, "u42", now + 60);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    t = mint(JWT_ALG_HS384, SECRET, 0, "u42", now + 60);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    auth_free(&a);
}
END_TEST

START_TEST(sub_missing_or_invalid)
{
    struct auth a;
    init_secret(&a);
    const char *why;
    char *t = mint(JWT_ALG_HS256, SECRET, 0, NULL, now + 60);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    ck_assert_ptr_nonnull(strstr(why, "sub"));
    free(t);
    const char *bad[] = {"", "u 42", "u/42", "ü42", "u42\n", "{u42}", "u*"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        t = mint(JWT_ALG_HS256, SECRET, 0, bad[i], now + 60);
        ck_assert_msg(verify(&a, t, NULL, &why) == -1, "sub \"%s\" accepted", bad[i]);
        free(t);
    }
    char longid[ACCOUNT_ID_MAX + 2];
    memset(longid, 'x', sizeof(longid));
    longid[ACCOUNT_ID_MAX + 1] = '\0'; /* 129 bytes */
    t = mint(JWT_ALG_HS256, SECRET, 0, longid, now + 60);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    longid[ACCOUNT_ID_MAX] = '\0'; /* 128 bytes: fine */
    char acct[ACCOUNT_ID_MAX + 1];
    t = mint(JWT_ALG_HS256, SECRET, 0, longid, now + 60);
    ck_assert_int_eq(verify(&a, t, acct, NULL), 0);
    ck_assert_str_eq(acct, longid);
    free(t);
    /* sub not a string */
    jwt_t *j = NULL;
    ck_assert_int_eq(jwt_new(&j), 0);
    char grants[128];
    snprintf(grants, sizeof(grants), "{\"sub\":42,\"exp\":%lld}", (long long)now + 60);
    ck_assert_int_eq(jwt_add_grants_json(j, grants), 0);
    ck_assert_int_eq(
        jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
    t = jwt_encode_str(j);
    jwt_free(j);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    auth_free(&a);
}
END_TEST

START_TEST(garbage_tokens)
{
    struct auth a;
    init_secret(&a);
    const char *why = NULL;
    char acct[ACCOUNT_ID_MAX + 1];
    int64_t exp;
    ck_assert_int_eq(auth_verify(&a, "", 0, now, acct, &exp, &why), -1);
    ck_assert_ptr_nonnull(why);
    const char *bad[] = {"x", "a.b", "a.b.c", "..", "eyJhbGciOiJIUzI1NiJ9..", "Bearer x.y.z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        ck_assert_int_eq(verify(&a, bad[i], NULL, NULL), -1);
    /* longer than any header could carry */
    size_t n = 10000;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[n] = '\0';
    ck_assert_int_eq(verify(&a, big, NULL, NULL), -1);
    free(big);
    auth_free(&a);
}
END_TEST

START_TEST(rs256_good_and_key_confusion)
{
    struct auth a;
    init_pem(&a, rsa_pub_path, JWT_ALG_RS256);
    char acct[ACCOUNT_ID_MAX + 1];
    const char *why;
    char *t = mint(JWT_ALG_RS256, rsa_priv, 0, "u42", now + 60);
    ck_assert_int_eq(verify(&a, t, acct, &why), 0);
    ck_assert_str_eq(acct, "u42");
    free(t);
    /* RS256 expired, and RS256 without sub */
    t = mint(JWT_ALG_RS256, rsa_priv, 0, "u42", now - 10);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    t = mint(JWT_ALG_RS256, rsa_priv, 0, NULL, now + 60);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    /* key confusion: HS256 keyed with the public PEM text itself */
    t = mint(JWT_ALG_HS256, rsa_pub, strlen(rsa_pub), "u42", now + 60);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    /* and with the exact bytes of the key file the daemon read */
    ck_assert_int_gt((int)a.key_len, 0);
    t = mint(JWT_ALG_HS256, (const char *)a.key, a.key_len, "u42", now + 60);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    /* RS512 with the right key is not RS256 */
    t = mint(JWT_ALG_RS512, rsa_priv, 0, "u42", now + 60);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    /* ES256 token against the RSA key */
    t = mint(JWT_ALG_ES256, ec_priv, 0, "u42", now + 60);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    auth_free(&a);
}
END_TEST

START_TEST(es256_good)
{
    struct auth a;
    init_pem(&a, ec_pub_path, JWT_ALG_ES256);
    char acct[ACCOUNT_ID_MAX + 1];
    const char *why;
    char *t = mint(JWT_ALG_ES256, ec_priv, 0, "user@example.com", now + 60);
    ck_assert_int_eq(verify(&a, t, acct, &why), 0);
    ck_assert_str_eq(acct, "user@example.com");
    free(t);
    /* key confusion with the EC public key */
    t = mint(JWT_ALG_HS256, ec_pub, strlen(ec_pub), "u42", now + 60);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    /* RS256 token against the EC key */
    t = mint(JWT_ALG_RS256, rsa_priv, 0, "u42", now + 60);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    /* expired ES256 */
    t = mint(JWT_ALG_ES256, ec_priv, 0, "u42", now - 1);
    ck_assert_int_eq(verify(&a, t, NULL, &why), -1);
    free(t);
    auth_free(&a);
}
END_TEST

START_TEST(secret_ignores_rsa_token)
{
    /* an RS256 token must not pass an HS256 configuration either */
    struct auth a;
    init_secret(&a);
    char *t = mint(JWT_ALG_RS256, rsa_priv, 0, "u42", now + 60);
    ck_assert_int_eq(verify(&a, t, NULL, NULL), -1);
    free(t);
    auth_free(&a);
}
END_TEST

START_TEST(init_errors)
{
    struct auth a;
    char err[256];
    err[0] = '\0';
    ck_assert_int_eq(auth_init(&a, NULL, NULL, err, sizeof(err)), -1);
    ck_assert_uint_gt(strlen(err), 0);
    err[0] = '\0';
    ck_assert_int_eq(auth_init(&a, "", NULL, err, sizeof(err)), -1);
    ck_assert_uint_gt(strlen(err), 0);
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/does-not-exist.pem", tmpdir);
    err[0] = '\0';
    ck_assert_int_eq(auth_init(&a, NULL, missing, err, sizeof(err)), -1);
    ck_assert_uint_gt(strlen(err), 0);
    err[0] = '\0';
    ck_assert_int_eq(auth_init(&a, NULL, junk_path, err, sizeof(err)), -1);
    ck_assert_uint_gt(strlen(err), 0);
    err[0] = '\0';
    ck_assert_int_eq(auth_init(&a, NULL, ed_pub_path, err, sizeof(err)), -1);
    ck_assert_uint_gt(strlen(err), 0);
    /* a verify after a failed init refuses everything */
    char *t = mint(JWT_ALG_HS256, SECRET, 0, "u42", now + 60);
    ck_assert_int_eq(verify(&a, t, NULL, NULL), -1);
    free(t);
    auth_free(&a);
    auth_free(&a); /* idempotent */
}
END_TEST

/* header.payload.signature signed by hand with HMAC-SHA256, so that the
 * header and claims can be anything libjwt would never produce. */
static char *hs256_token(const char *header, const char *payload, const char *key)
{
    char *h = b64url(header), *p = b64url(payload);
    char *signing = NULL;
    ck_assert_int_gt(asprintf(&signing, "%s.%s", h, p), 0);
    unsigned char mac[32];
    size_t mac_len = 0;
    ck_assert_ptr_nonnull(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, strlen(key),
                                    (const unsigned char *)signing, strlen(signing), mac,
                                    sizeof(mac), &mac_len));
    ck_assert_uint_eq(mac_len, 32);
    /* b64url() takes a C string, and a MAC may hold NUL bytes. */
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char sig[44];
    size_t o = 0;
    for (size_t i = 0; i < 32; i += 3) {
        uint32_t v = (uint32_t)mac[i] << 16 | (i + 1 < 32 ? (uint32_t)mac[i + 1] << 8 : 0) |
                     (i + 2 < 32 ? mac[i + 2] : 0);
        sig[o++] = tbl[(v >> 18) & 63];
        sig[o++] = tbl[(v >> 12) & 63];
        if (i + 1 < 32)
            sig[o++] = tbl[(v >> 6) & 63];
        if (i + 2 < 32)
            sig[o++] = tbl[v & 63];
    }
    sig[o] = '\0';
    char *t = NULL;
    ck_assert_int_gt(asprintf(&t, "%s.%s", signing, sig), 0);
    free(h);
    free(p);
    free(signing);
    return t;
}

/* The HS256 verifier is ours (not libjwt's): what it must refuse beyond a
 * bad signature, and what it must still accept. */
START_TEST(hs256_strict)
{
    struct auth a;
    init_secret(&a);
    char claims[160];
    snprintf(claims, sizeof(claims), "{\"sub\":\"u42\",\"exp\":%lld}", (long long)now + 60);
    char acct[ACCOUNT_ID_MAX + 1];
    const char *why = NULL;
    const char *good_heads[] = {"{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"alg\":\"HS256\"}",
                                "{\"typ\":\"jwt\", \"alg\" : \"HS256\", \"kid\":\"k1\"}"};
    for (size_t i = 0; i < sizeof(good_heads) / sizeof(*good_heads); i++) {
        char *t = hs256_token(good_heads[i], claims, SECRET);
        ck_assert_msg(verify(&a, t, acct, &why) == 0, "header %s refused: %s", good_heads[i], why);
        ck_assert_str_eq(acct, "u42");
        free(t);
    }
    const char *bad_heads[] = {"{\"alg\":\"HS256\",\"typ\":\"JOSE\"}",
                               "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
                               "{\"alg\":\"HS256\\u0000x\"}",
                               "{\"alg\":\"hs256\"}",
                               "{\"alg\":\"HS256\",\"alg\":\"none\"}",
                               "[\"HS256\"]",
                               "{\"alg\":\"HS256\""};
    for (size_t i = 0; i < sizeof(bad_heads) / sizeof(*bad_heads); i++) {
        char *t = hs256_token(bad_heads[i], claims, SECRET);
        ck_assert_msg(verify(&a, t, NULL, &why) == -1, "header %s accepted", bad_heads[i]);
        free(t);
    }
    char bad_claims[6][160];
    snprintf(bad_claims[0], 160, "{\"sub\":\"u42\",\"sub\":\"admin\",\"exp\":%lld}",
             (long long)now + 60);
    snprintf(bad_claims[1], 160, "{\"sub\":\"u42\",\"exp\":%lld.5}", (long long)now + 60);
    snprintf(bad_claims[2], 160, "[\"u42\",%lld]", (long long)now + 60);
    snprintf(bad_claims[3], 160, "{\"sub\":\"u4\\u00002\",\"exp\":%lld}", (long long)now + 60);
    /* a key spelled with escapes is the same key to other JSON readers */
    snprintf(bad_claims[4], 160, "{\"sub\":\"u42\",\"s\\u0075b\":\"admin\",\"exp\":%lld}",
             (long long)now + 60);
    snprintf(bad_claims[5], 160, "{\"sub\":\"u42\",\"\\u0065xp\":%lld}", (long long)now + 60);
    for (size_t i = 0; i < 6; i++) {
        char *t = hs256_token("{\"alg\":\"HS256\"}", bad_claims[i], SECRET);
        ck_assert_msg(verify(&a, t, NULL, &why) == -1, "claims %s accepted", bad_claims[i]);
        free(t);
    }
    /* other escaped keys and nested values are fine */
    char odd[200];
    snprintf(odd, sizeof(odd),
             "{\"n\\u00e9\":1,\"sub\":\"u42\",\"x\":{\"sub\":\"admin\",\"exp\":1},\"exp\":%lld}",
             (long long)now + 60);
    char *o = hs256_token("{\"alg\":\"HS256\"}", odd, SECRET);
    ck_assert_int_eq(verify(&a, o, acct, NULL), 0);
    ck_assert_str_eq(acct, "u42");
    free(o);
    /* the right token spelled differently: padding, a fourth part, base64
     * instead of base64url, whitespace */
    char *t = hs256_token("{\"alg\":\"HS256\"}", claims, SECRET);
    ck_assert_int_eq(verify(&a, t, NULL, NULL), 0);
    char *v = NULL;
    const char *suffixes[] = {"=", ".", ".x", " "};
    for (size_t i = 0; i < 4; i++) {
        ck_assert_int_gt(asprintf(&v, "%s%s", t, suffixes[i]), 0);
        ck_assert_msg(verify(&a, v, NULL, NULL) == -1, "token + \"%s\" accepted", suffixes[i]);
        free(v);
    }
    char *dot = strchr(t, '.');
    ck_assert_int_gt(asprintf(&v, "%.*s=%s", (int)(dot - t), t, dot), 0);
    ck_assert_int_eq(verify(&a, v, NULL, NULL), -1);
    free(v);
    v = strdup(t);
    for (char *c = v; *c; c++)
        if (*c == '-' || *c == '_')
            *c = *c == '-' ? '+' : '/';
    if (strcmp(v, t) != 0)
        ck_assert_int_eq(verify(&a, v, NULL, NULL), -1);
    free(v);
    /* the keyed HMAC context is reused: the same answer every time */
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(verify(&a, t, NULL, NULL), 0);
    free(t);
    t = hs256_token("{\"alg\":\"HS256\"}", claims, "another-secret");
    ck_assert_int_eq(verify(&a, t, NULL, NULL), -1);
    free(t);
    auth_free(&a);
}
END_TEST

/* b64url() of n bytes that may hold NULs (a signature). */
static char *b64url_bytes(const unsigned char *in, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n * 4 / 3 + 4);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = tbl[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = tbl[v & 63];
    }
    out[o] = '\0';
    return out;
}

/* header.payload.signature signed by hand with an RSA (RS256) or EC
 * (ES256: the DER signature turned into R || S of 32 bytes each) private
 * key, so that the header and claims can be anything libjwt would never
 * produce. */
static char *pk_token(const char *header, const char *payload, EVP_PKEY *key)
{
    char *h = b64url(header), *p = b64url(payload);
    char *signing = NULL;
    ck_assert_int_gt(asprintf(&signing, "%s.%s", h, p), 0);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[1024];
    size_t der_len = sizeof(der);
    ck_assert_int_eq(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
    ck_assert_int_eq(
        EVP_DigestSign(ctx, der, &der_len, (const unsigned char *)signing, strlen(signing)), 1);
    EVP_MD_CTX_free(ctx);
    unsigned char raw[64];
    const unsigned char *sig = der;
    size_t sig_len = der_len;
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
        const unsigned char *q = der;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)der_len);
        ck_assert_ptr_nonnull(es);
        ck_assert_int_eq(BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32), 32);
        ck_assert_int_eq(BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32), 32);
        ECDSA_SIG_free(es);
        sig = raw;
        sig_len = sizeof(raw);
    }
    char *s64 = b64url_bytes(sig, sig_len);
    char *t = NULL;
    ck_assert_int_gt(asprintf(&t, "%s.%s", signing, s64), 0);
    free(s64);
    free(h);
    free(p);
    free(signing);
    return t;
}

/* The cases public_key_strict saw accepted, listed so that one failure
 * shows all of them. */
static char accepted[8192];

/* Records token as wrongly accepted (with the account it was bound to) if
 * auth_verify takes it. */
static void must_refuse(const struct auth *a, const char *token, const char *what)
{
    char acct[ACCOUNT_ID_MAX + 1];
    if (verify(a, token, acct, NULL) == 0) {
        size_t n = strlen(accepted);
        snprintf(accepted + n, sizeof(accepted) - n, "\n  %s (as '%s')", what, acct);
    }
}

/* The reading HS256 tokens get (hs256_strict), for a public-key
 * configuration: only the signature check differs. */
static void public_key_strict(const char *pub_path, jwt_alg_t alg, const char *alg_name,
                              EVP_PKEY *key)
{
    struct auth a;
    init_pem(&a, pub_path, alg);
    accepted[0] = '\0';
    char head[64], claims[160];
    snprintf(head, sizeof(head), "{\"alg\":\"%s\"}", alg_name);
    snprintf(claims, sizeof(claims), "{\"sub\":\"alice\",\"exp\":%lld}", (long long)now + 60);
    char acct[ACCOUNT_ID_MAX + 1];
    const char *why = NULL;

    /* the baseline, and headers every issuer writes */
    char good_heads[3][96];
    snprintf(good_heads[0], 96, "{\"alg\":\"%s\"}", alg_name);
    snprintf(good_heads[1], 96, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg_name);
    snprintf(good_heads[2], 96, "{\"typ\":\"jwt\", \"alg\" : \"%s\", \"kid\":\"k1\"}", alg_name);
    for (size_t i = 0; i < 3; i++) {
        char *t = pk_token(good_heads[i], claims, key);
        ck_assert_msg(verify(&a, t, acct, &why) == 0, "%s: header %s refused: %s", alg_name,
                      good_heads[i], why);
        ck_assert_str_eq(acct, "alice");
        free(t);
    }

    char bad_heads[5][96];
    snprintf(bad_heads[0], 96, "{\"alg\":\"%s\",\"crit\":[\"exp\"]}", alg_name);
    snprintf(bad_heads[1], 96, "{\"alg\":\"%s\",\"typ\":\"JOSE\"}", alg_name);
    snprintf(bad_heads[2], 96, "{\"alg\":\"%s\",\"alg\":\"%s\"}", alg_name, alg_name);
    snprintf(bad_heads[3], 96, "{\"\\u0061lg\":\"%s\"}", alg_name);
    snprintf(bad_heads[4], 96, "{\"alg\":\"%s\",\"\\u0063rit\":[\"exp\"]}", alg_name);
    for (size_t i = 0; i < 5; i++) {
        char *t = pk_token(bad_heads[i], claims, key);
        must_refuse(&a, t, bad_heads[i]);
        free(t);
    }

    char bad_claims[7][200];
    long long e = (long long)now + 60;
    /* a duplicate sub: other readers take the first, libjwt the last */
    snprintf(bad_claims[0], 200, "{\"sub\":\"alice\",\"sub\":\"bob\",\"exp\":%lld}", e);
    snprintf(bad_claims[1], 200, "{\"sub\":\"alice\",\"exp\":%lld,\"exp\":%lld}", e, e + 86400);
    snprintf(bad_claims[2], 200, "{\"sub\":\"al\\u0069ce\",\"exp\":%lld}", e);
    snprintf(bad_claims[3], 200, "{\"s\\u0075b\":\"bob\",\"sub\":\"alice\",\"exp\":%lld}", e);
    snprintf(bad_claims[4], 200, "{\"sub\":\"alice\",\"\\u0065xp\":%lld}", e);
    snprintf(bad_claims[5], 200, "{\"sub\":\"alice\",\"exp\":%lld.5}", e);
    snprintf(bad_claims[6], 200, "[\"alice\",%lld]", e);
    for (size_t i = 0; i < 7; i++) {
        char *t = pk_token(head, bad_claims[i], key);
        must_refuse(&a, t, bad_claims[i]);
        free(t);
    }
    /* other escaped keys and nested values are fine */
    char odd[200];
    snprintf(odd, sizeof(odd),
             "{\"n\\u00e9\":1,\"sub\":\"alice\",\"x\":{\"sub\":\"bob\",\"exp\":1},\"exp\":%lld}",
             e);
    char *o = pk_token(head, odd, key);
    ck_assert_int_eq(verify(&a, o, acct, NULL), 0);
    ck_assert_str_eq(acct, "alice");
    free(o);

    /* the right token spelled differently: padding on the signature or the
     * header, a fourth part, base64 instead of base64url, whitespace, spare
     * bits set in the signature's last digit */
    char *t = pk_token(head, claims, key);
    ck_assert_int_eq(verify(&a, t, NULL, NULL), 0);
    char *v = NULL;
    const char *suffixes[] = {"==", "=", ".", ".x", " "};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(*suffixes); i++) {
        ck_assert_int_gt(asprintf(&v, "%s%s", t, suffixes[i]), 0);
        char what[32];
        snprintf(what, sizeof(what), "token + \"%s\"", suffixes[i]);
        must_refuse(&a, v, what);
        free(v);
    }
    char *dot = strchr(t, '.');
    ck_assert_int_gt(asprintf(&v, "%.*s=%s", (int)(dot - t), t, dot), 0);
    must_refuse(&a, v, "a padded header");
    free(v);
    v = strdup(t);
    for (char *c = v; *c; c++)
        if (*c == '-' || *c == '_')
            *c = *c == '-' ? '+' : '/';
    if (strcmp(v, t) != 0)
        must_refuse(&a, v, "base64, not base64url");
    free(v);
    /* both signatures are 2 bytes past a multiple of 3: the last digit
     * carries 4 spare bits */
    v = strdup(t);
    char *last = v + strlen(v) - 1;
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    *last = tbl[(strchr(tbl, *last) - tbl) ^ 1];
    must_refuse(&a, v, "spare bits set in the signature");
    free(v);
    /* a signature cut short, and one from another key of the same type */
    v = strndup(t, strlen(t) - 4);
    must_refuse(&a, v, "a signature cut short");
    free(v);
    free(t);
    EVP_PKEY *other = alg == JWT_ALG_RS256 ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    ck_assert_ptr_nonnull(other);
    t = pk_token(head, claims, other);
    must_refuse(&a, t, "signed with another key");
    free(t);
    EVP_PKEY_free(other);
    ck_assert_msg(!accepted[0], "%s accepted:%s", alg_name, accepted);
    /* the key is parsed once: the same answer every time */
    t = pk_token(head, claims, key);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(verify(&a, t, NULL, NULL), 0);
    free(t);
    auth_free(&a);
}

START_TEST(rs256_strict)
{
    public_key_strict(rsa_pub_path, JWT_ALG_RS256, "RS256", rsa_key);
}
END_TEST

START_TEST(es256_strict)
{
    public_key_strict(ec_pub_path, JWT_ALG_ES256, "ES256", ec_key);
}
END_TEST

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, hs256_good);
    tcase_add_test(tc, hs256_strict);
    tcase_add_test(tc, expired);
    tcase_add_test(tc, exp_missing_or_not_a_number);
    tcase_add_test(tc, wrong_secret);
    tcase_add_test(tc, alg_none_refused);
    tcase_add_test(tc, hs512_refused);
    tcase_add_test(tc, sub_missing_or_invalid);
    tcase_add_test(tc, garbage_tokens);
    tcase_add_test(tc, rs256_good_and_key_confusion);
    tcase_add_test(tc, es256_good);
    tcase_add_test(tc, rs256_strict);
    tcase_add_test(tc, es256_strict);
    tcase_add_test(tc, secret_ignores_rsa_token);
    tcase_add_test(tc, init_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    now = (int64_t)time(NULL);
    if (make_keys() != 0) {
        fprintf(stderr, "test_auth: cannot generate keys\n");
        remove_keys();
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(auth_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    remove_keys();
    free(rsa_priv);
    free(rsa_pub);
    free(ec_priv);
    free(ec_pub);
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(ec_key);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
