/* test_auth_strict: who a client is, as a real gateway decides it.
 *   - RS256 and ES256 tokens are read as strictly as HS256 ones: a
 *     duplicate or escaped sub, a crit header, a padded signature get 401
 *     on /ws, not a connection bound to one of the accounts;
 *   - a --jwt-public-key that is no usable key exits 2 with one line on
 *     stderr naming the flag, like every bad flag;
 *   - an identity given twice (two Authorization headers, two token or
 *     user_id query arguments) gets 400, in --auth jwt and --auth none.
 * Keys are generated here; tokens are signed by hand with OpenSSL so that
 * they can hold what no JWT library writes. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define SECRET "strict-secret"

static struct h_redis R;
static struct h_gw G;

static void setup(void)
{
    h_ck_setup(&R, &G);
}

static void teardown(void)
{
    h_ck_teardown(&R, &G);
}

/* ---- keys and tokens ---------------------------------------------------- */

static char *b64url(const unsigned char *in, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n * 4 / 3 + 4);
    ck_assert_ptr_nonnull(out);
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

static char *b64url_str(const char *s)
{
    return b64url((const unsigned char *)s, strlen(s));
}

/* header.payload.signature signed with key: RS256 for RSA, ES256 (R || S)
 * for EC. */
static char *pk_token(const char *header, const char *payload, EVP_PKEY *key)
{
    char *h = b64url_str(header), *p = b64url_str(payload), *signing = NULL;
    ck_assert_int_gt(asprintf(&signing, "%s.%s", h, p), 0);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[1024], raw[64];
    size_t der_len = sizeof(der);
    ck_assert_int_eq(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
    ck_assert_int_eq(
        EVP_DigestSign(ctx, der, &der_len, (const unsigned char *)signing, strlen(signing)), 1);
    EVP_MD_CTX_free(ctx);
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
    char *s64 = b64url(sig, sig_len), *t = NULL;
    ck_assert_int_gt(asprintf(&t, "%s.%s", signing, s64), 0);
    free(s64);
    free(h);
    free(p);
    free(signing);
    return t;
}

/* Writes text into a new file name in a fresh temp dir; path receives it. */
static void write_file(char path[H_PATH_MAX], const char *name, const char *text)
{
    char dir[H_PATH_MAX];
    ck_assert_int_eq(h_tmpdir(dir), 0);
    ck_assert_int_lt(snprintf(path, H_PATH_MAX, "%s/%s", dir, name), H_PATH_MAX);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
}

/* The public half of key as a PEM file. */
static void write_public_pem(char path[H_PATH_MAX], EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(PEM_write_bio_PUBKEY(b, key), 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *text = strndup(data, (size_t)n);
    BIO_free(b);
    write_file(path, "key.pub.pem", text);
    free(text);
}

/* The status /ws answers token, sent as "Authorization: Bearer" (header)
 * or as ?token= (query); a 101 is closed again at once. */
static int ws_status(const char *token, int as_query)
{
    char *path = NULL, *headers = NULL;
    ck_assert_int_gt(asprintf(&path, "/ws%s%s", as_query ? "?token=" : "", as_query ? token : ""),
                     0);
    if (!as_query)
        ck_assert_int_gt(asprintf(&headers, "Authorization: Bearer %s\r\n", token), 0);
    struct ws c;
    int st = ws_connect(&c, G.port, path, headers, 5000);
    ws_close(&c, 1000); /* also frees a refusal's body */
    free(path);
    free(headers);
    return st;
}

/* A good token connects, as its sub; each bad one gets 401, as a header
 * and as ?token=. */
static void public_key_gateway(EVP_PKEY *key, const char *alg)
{
    char pem[H_PATH_MAX];
    write_public_pem(pem, key);
    H_GW(&G, &R, "--auth", "jwt", "--jwt-public-key", pem);
    long long exp = h_unix_s() + 600;
    char head[64], claims[160];
    snprintf(head, sizeof(head), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    snprintf(claims, sizeof(claims), "{\"sub\":\"alice\",\"exp\":%lld}", exp);

    char *good = pk_token(head, claims, key);
    struct ws c;
    char *path = NULL;
    ck_assert_int_gt(asprintf(&path, "/ws?token=%s", good), 0);
    free(h_ck_ws_open(&c, G.port, path, 5000));
    ws_close(&c, 1000);
    free(path);
    ck_assert_int_eq(ws_status(good, 0), 101);

    /* libjwt reads the last of two subs: the connection was bob's */
    char dup_sub[160], esc_sub[160], esc_key[160], crit[96];
    snprintf(dup_sub, sizeof(dup_sub), "{\"sub\":\"alice\",\"sub\":\"bob\",\"exp\":%lld}", exp);
    snprintf(esc_sub, sizeof(esc_sub), "{\"sub\":\"al\\u0069ce\",\"exp\":%lld}", exp);
    snprintf(esc_key, sizeof(esc_key), "{\"sub\":\"alice\",\"s\\u0075b\":\"bob\",\"exp\":%lld}",
             exp);
    snprintf(crit, sizeof(crit), "{\"alg\":\"%s\",\"crit\":[\"exp\"]}", alg);
    char *bad[5];
    bad[0] = pk_token(head, dup_sub, key);
    bad[1] = pk_token(head, esc_sub, key);
    bad[2] = pk_token(head, esc_key, key);
    bad[3] = pk_token(crit, claims, key);
    ck_assert_int_gt(asprintf(&bad[4], "%s==", good), 0);
    const char *what[] = {"a duplicate sub", "an escaped sub", "an escaped sub key",
                          "a crit header", "a padded signature"};
    for (int i = 0; i < 5; i++) {
        int st = ws_status(bad[i], 0);
        ck_assert_msg(st == 401, "%s %s token in Authorization: %d, want 401", alg, what[i], st);
        st = ws_status(bad[i], 1);
        ck_assert_msg(st == 401, "%s %s token in ?token=: %d, want 401", alg, what[i], st);
        free(bad[i]);
    }
    free(good);
}

START_TEST(test_rs256_strict)
{
    EVP_PKEY *key = EVP_RSA_gen(2048);
    ck_assert_ptr_nonnull(key);
    public_key_gateway(key, "RS256");
    EVP_PKEY_free(key);
}
END_TEST

START_TEST(test_es256_strict)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    ck_assert_ptr_nonnull(key);
    public_key_gateway(key, "ES256");
    EVP_PKEY_free(key);
}
END_TEST

/* ---- --jwt-public-key --------------------------------------------------- */

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The gateway given key (as the flag, or as NOTIFY_JWT_PUBLIC_KEY) exits 2
 * with one line naming the flag. */
static void expect_bad_key(const char *key, const char *what)
{
    char listen[64], url[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", h_free_port());
    h_redis_url(&R, url, sizeof(url));
    for (int by_env = 0; by_env < 2; by_env++) {
        char *env_var = NULL;
        ck_assert_int_gt(asprintf(&env_var, "NOTIFY_JWT_PUBLIC_KEY=%s", key), 0);
        const char *args[] = {
            "--listen", listen, "--redis", url, "--auth", "jwt", by_env ? NULL : "--jwt-public-key",
            key,        NULL};
        const char *env[] = {env_var, NULL};
        char *err = NULL;
        int st = h_gw_run(args, by_env ? env : NULL, 5000, &err);
        ck_assert_msg(st == 2, "%s (%s): exit status %d, want 2; stderr: %s", what,
                      by_env ? "env" : "flag", st, err ? err : "");
        ck_assert_msg(strncmp(err, "notify-gateway: --jwt-public-key: ", 34) == 0,
                      "%s: stderr does not name the flag: %s", what, err);
        ck_assert_msg(count_lines(err) == 1, "%s: error is not one line: %s", what, err);
        free(err);
        free(env_var);
    }
}

START_TEST(test_bad_public_key_exit_2)
{
    char junk[H_PATH_MAX], empty[H_PATH_MAX], ed[H_PATH_MAX], priv[H_PATH_MAX];
    write_file(junk, "junk.pem",
               "-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n");
    write_file(empty, "empty.pem", "");
    EVP_PKEY *ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    ck_assert_ptr_nonnull(ed25519);
    ck_assert_ptr_nonnull(rsa);
    write_public_pem(ed, ed25519);
    BIO *b = BIO_new(BIO_s_mem());
    ck_assert_int_eq(PEM_write_bio_PrivateKey(b, rsa, NULL, NULL, 0, NULL, NULL), 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *text = strndup(data, (size_t)n);
    BIO_free(b);
    write_file(priv, "rsa.key.pem", text);
    free(text);
    EVP_PKEY_free(ed25519);
    EVP_PKEY_free(rsa);
    char dir[H_PATH_MAX], missing[H_PATH_MAX + 16];
    ck_assert_int_eq(h_tmpdir(dir), 0);
    snprintf(missing, sizeof(missing), "%s/none.pem", dir);

    expect_bad_key(junk, "a PEM block that is no key");
    expect_bad_key(empty, "an empty file");
    expect_bad_key(ed, "an Ed25519 key");
    expect_bad_key(priv, "a private key");
    expect_bad_key(missing, "a missing file");
    expect_bad_key(dir, "a directory");
}
END_TEST

/* ---- an identity given twice -------------------------------------------- */

/* The status /ws answers path with extra headers. */
static int upgrade_status(const char *path, const char *headers)
{
    struct ws c;
    int st = ws_connect(&c, G.port, path, headers, 5000);
    ws_close(&c, 1000); /* also frees a refusal's body */
    return st;
}

START_TEST(test_duplicate_token_400)
{
    H_GW(&G, &R, "--auth", "jwt", "--jwt-secret", SECRET);
    long long exp = h_unix_s() + 600;
    char *alice = h_jwt_hs256(SECRET, "alice", exp), *bob = h_jwt_hs256(SECRET, "bob", exp);
    ck_assert_ptr_nonnull(alice);
    ck_assert_ptr_nonnull(bob);
    char *one = NULL, *two = NULL, *same = NULL, *q1 = NULL, *q2 = NULL, *qsame = NULL;
    ck_assert_int_gt(asprintf(&one, "Authorization: Bearer %s\r\n", alice), 0);
    ck_assert_int_gt(
        asprintf(&two, "Authorization: Bearer %s\r\nauthorization: Bearer %s\r\n", alice, bob), 0);
    ck_assert_int_gt(
        asprintf(&same, "Authorization: Bearer %s\r\nAuthorization: Bearer %s\r\n", alice, alice),
        0);
    ck_assert_int_gt(asprintf(&q1, "/ws?token=%s", alice), 0);
    ck_assert_int_gt(asprintf(&q2, "/ws?token=%s&since=1-0&token=%s", alice, bob), 0);
    ck_assert_int_gt(asprintf(&qsame, "/ws?token=%s&token=%s", alice, alice), 0);

    ck_assert_int_eq(upgrade_status("/ws", one), 101);
    ck_assert_int_eq(upgrade_status(q1, NULL), 101);
    ck_assert_int_eq(upgrade_status("/ws", two), 400);
    ck_assert_int_eq(upgrade_status("/ws", same), 400);
    ck_assert_int_eq(upgrade_status(q2, NULL), 400);
    ck_assert_int_eq(upgrade_status(qsame, NULL), 400);
    /* a user_id means nothing with --auth jwt: not an identity given twice */
    char *with_user = NULL;
    ck_assert_int_gt(asprintf(&with_user, "%s&user_id=x&user_id=y", q1), 0);
    ck_assert_int_eq(upgrade_status(with_user, NULL), 101);
    free(with_user);
    free(alice);
    free(bob);
    free(one);
    free(two);
    free(same);
    free(q1);
    free(q2);
    free(qsame);
}
END_TEST

START_TEST(test_duplicate_user_id_400)
{
    H_GW(&G, &R, "--auth", "none");
    ck_assert_int_eq(upgrade_status("/ws?user_id=alice", NULL), 101);
    ck_assert_int_eq(upgrade_status("/ws?user_id=alice&user_id=bob", NULL), 400);
    ck_assert_int_eq(upgrade_status("/ws?user_id=alice&since=1-0&user_id=alice", NULL), 400);
    ck_assert_int_eq(upgrade_status("/ws?user_id=alice&user_id", NULL), 400);
    /* a token means nothing with --auth none */
    ck_assert_int_eq(upgrade_status("/ws?user_id=alice&token=a&token=b", NULL), 101);
}
END_TEST

static Suite *auth_strict_suite(void)
{
    Suite *s = suite_create("auth-strict");
    TCase *tc = h_tcase(s, "tokens", 60, setup, teardown);
    tcase_add_test(tc, test_rs256_strict);
    tcase_add_test(tc, test_es256_strict);
    tc = h_tcase(s, "key-flag", 60, setup, teardown);
    tcase_add_test(tc, test_bad_public_key_exit_2);
    tc = h_tcase(s, "identity-twice", 60, setup, teardown);
    tcase_add_test(tc, test_duplicate_token_400);
    tcase_add_test(tc, test_duplicate_user_id_400);
    return s;
}

int main(void)
{
    return h_run_suite(auth_strict_suite());
}
