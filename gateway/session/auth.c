#include "auth.h"

#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jsoncheck.h"

/* Tokens are bounded by the request head buffer; this bound keeps the
 * decoded parts on the stack. */
#define TOKEN_MAX 8192
#define HS256_LEN 32
#define HS256_B64_LEN 43 /* base64url of 32 bytes, unpadded */
/* The largest RS256 or ES256 signature taken: an 8192-bit RSA modulus. */
#define SIG_MAX 1024

/* A PEM public key is a few KB; anything past this is not one. */
#define KEY_FILE_MAX (1 << 20)

/* The whole file, NUL-terminated (PEM is text), or NULL with a reason in
 * err. */
static unsigned char *read_key_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap + 1);
    if (!buf)
        snprintf(err, errlen, "out of memory");
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        unsigned char *bigger = cap < KEY_FILE_MAX ? realloc(buf, cap * 2 + 1) : NULL;
        if (!bigger) {
            free(buf);
            buf = NULL;
            snprintf(err, errlen, "larger than %d bytes, or out of memory", KEY_FILE_MAX);
        }
        buf = bigger;
        cap *= 2;
    }
    if (buf && ferror(f)) {
        snprintf(err, errlen, "cannot read: %s", strerror(errno)); /* a directory: EISDIR */
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Reads and parses the PEM file once; the key type decides the pinned
 * algorithm. The file's bytes are kept too (a->key). Errors do not name
 * the file: the caller does. */
static int load_public_key(struct auth *a, const char *path, char *err, size_t errlen)
{
    a->key = read_key_file(path, &a->key_len, err, errlen);
    if (!a->key)
        return -1;
    BIO *bio = BIO_new_mem_buf(a->key, (int)a->key_len);
    a->pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    int type = a->pkey ? EVP_PKEY_get_base_id(a->pkey) : EVP_PKEY_NONE;
    if (!a->pkey)
        snprintf(err, errlen, "not a PEM public key");
    else if (type != EVP_PKEY_RSA && type != EVP_PKEY_EC)
        snprintf(err, errlen, "only RSA (RS256) and EC (ES256) keys are supported");
    else if (!(a->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)))
        snprintf(err, errlen, "cannot set up SHA-256 (OpenSSL)");
    else {
        a->alg = type == EVP_PKEY_RSA ? JWT_ALG_RS256 : JWT_ALG_ES256;
        /* RS256: one modulus-sized integer; ES256: R || S, each as wide as
         * the curve (RFC 7518 section 3.4: 32 bytes for P-256). */
        int bits = EVP_PKEY_get_bits(a->pkey);
        a->sig_len = type == EVP_PKEY_RSA ? (size_t)EVP_PKEY_get_size(a->pkey)
                                          : 2 * (size_t)((bits + 7) / 8);
        if (bits > 0 && a->sig_len > 0 && a->sig_len <= SIG_MAX)
            return 0;
        snprintf(err, errlen, "unsupported key size");
    }
    auth_free(a); /* verify then refuses everything: no key */
    return -1;
}

/* Keys the HMAC context once; every token then only re-initialises it,
 * which copies the precomputed inner and outer digest states. */
static int hs256_init(struct auth *a, char *err, size_t errlen)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    a->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    a->hmac = a->mac ? EVP_MAC_CTX_new(a->mac) : NULL;
    if (!a->hmac || !EVP_MAC_init(a->hmac, a->key, a->key_len, params)) {
        snprintf(err, errlen, "cannot set up HMAC-SHA256 (OpenSSL)");
        auth_free(a); /* verify then refuses everything: no key */
        return -1;
    }
    return 0;
}

int auth_init(struct auth *a, const char *secret, const char *public_key_file, char *err,
              size_t errlen)
{
    memset(a, 0, sizeof(*a));
    if (public_key_file) {
        char why[160];
        if (load_public_key(a, public_key_file, why, sizeof(why)) == 0)
            return 0;
        snprintf(err, errlen, "%s: %s", public_key_file, why);
        return -1;
    }
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
    return hs256_init(a, err, errlen);
}

int auth_check_public_key(const char *path, char *err, size_t errlen)
{
    struct auth a;
    memset(&a, 0, sizeof(a));
    int rc = load_public_key(&a, path, err, errlen);
    auth_free(&a);
    return rc;
}

/* base64url digit values plus one, 0 for every other byte: a table, since
 * branches per character are a visible share of a connect (a token is
 * some 200 characters). */
static const unsigned char b64url_digit[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['-'] = 63, ['_'] = 64,
};

/* Unpadded base64url (RFC 7515 section 2), strictly: any other character,
 * padding included, makes it -1. Returns the decoded length. */
static long b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    if (n % 4 == 1)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_digit[(unsigned char)in[i]] - 1;
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (long)o;
}

/* The canonical unpadded base64url of a MAC, to compare as text: a
 * signature spelled any other way is refused, as libjwt does. */
static void b64url_encode_mac(const unsigned char in[HS256_LEN], char out[HS256_B64_LEN])
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= HS256_LEN; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
        out[o++] = abc[v & 63];
    }
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8; /* 32 = 30 + 2 */
    out[o++] = abc[v >> 18];
    out[o++] = abc[(v >> 12) & 63];
    out[o++] = abc[(v >> 6) & 63];
}

/* The members of a token's header or claims that we read, as raw spans of
 * their JSON values (strings with their quotes), found by one scan of the
 * text: building a tree with a JSON library costs more than the HMAC
 * (BENCHMARKS.md). */
struct fields {
    const char *alg, *typ, *exp, *sub;
    size_t alg_len, typ_len, exp_len, sub_len;
    int crit;      /* a "crit" member */
    int ambiguous; /* one of the above twice, or spelled with escapes */
};

static void take(struct fields *f, const char **span, size_t *span_len, const char *v, size_t n)
{
    if (*span)
        f->ambiguous = 1;
    *span = v;
    *span_len = n;
}

static int key_is(const char *key, size_t len, const char *name)
{
    return len == strlen(name) && memcmp(key, name, len) == 0;
}

/* Whether a key written with escapes spells one of the names we read
 * ("s\u0075b" is "sub" to any other JSON reader). Such a key is refused
 * rather than decoded: no issuer needs it. The escapes were validated by
 * jsoncheck; a name of 4 ASCII letters takes at most 24 bytes to write. */
static int escaped_key_is_ours(const char *key, size_t len)
{
    static const char *const ours[] = {"alg", "typ", "exp", "sub", "crit"};
    char name[5];
    size_t n = 0;
    if (len > 24)
        return 0;
    for (size_t i = 0; i < len; n++) {
        if (n == 4)
            return 0;
        if (key[i] != '\\') {
            name[n] = key[i++];
            continue;
        }
        if (key[i + 1] != 'u') {
            name[n] = key[i + 1]; /* \" \\ \/ or a control letter: not ours */
            i += 2;
            continue;
        }
        unsigned cp = 0;
        for (int k = 2; k < 6; k++) {
            char h = key[i + k];
            cp = cp * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
        }
        if (cp > 0x7F)
            return 0;
        name[n] = (char)cp;
        i += 6;
    }
    for (size_t k = 0; k < sizeof(ours) / sizeof(*ours); k++)
        if (n == strlen(ours[k]) && memcmp(name, ours[k], n) == 0)
            return 1;
    return 0;
}

static void on_member(void *ctx, const char *key, size_t key_len, const char *v, size_t n)
{
    struct fields *f = ctx;
    if (memchr(key, '\\', key_len)) {
        if (escaped_key_is_ours(key, key_len))
            f->ambiguous = 1;
    } else if (key_is(key, key_len, "alg"))
        take(f, &f->alg, &f->alg_len, v, n);
    else if (key_is(key, key_len, "typ"))
        take(f, &f->typ, &f->typ_len, v, n);
    else if (key_is(key, key_len, "exp"))
        take(f, &f->exp, &f->exp_len, v, n);
    else if (key_is(key, key_len, "sub"))
        take(f, &f->sub, &f->sub_len, v, n);
    else if (key_is(key, key_len, "crit"))
        f->crit = 1;
}

/* Reads a JSON object's members into f; 0 when it is not valid JSON, not
 * an object, or ambiguous. */
static int read_fields(const char *json, size_t len, struct fields *f)
{
    memset(f, 0, sizeof(*f));
    return jsoncheck_object_members(json, len, on_member, f, NULL) && !f->ambiguous;
}

/* Decodes one base64url part of the token and reads its fields. */
static int decode_part(const char *b64, size_t n, unsigned char *buf, size_t cap, struct fields *f)
{
    long len = b64url_decode(b64, n, buf, cap);
    return len > 0 && read_fields((const char *)buf, (size_t)len, f);
}

/* A string value without escapes (none of the values we compare needs
 * one; one that uses them anyway is refused, never misread). */
static int raw_string(const char *v, size_t n, const char **s, size_t *len)
{
    if (!v || n < 2 || v[0] != '"' || memchr(v + 1, '\\', n - 2))
        return 0;
    *s = v + 1;
    *len = n - 2;
    return 1;
}

static int string_is(const char *v, size_t n, const char *want, int nocase)
{
    const char *s;
    size_t len;
    if (!raw_string(v, n, &s, &len) || len != strlen(want))
        return 0;
    return nocase ? strncasecmp(s, want, len) == 0 : memcmp(s, want, len) == 0;
}

/* A JSON integer (no fraction or exponent) that fits in 64 bits. */
static int raw_int(const char *v, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = v && n && v[0] == '-';
    if (neg)
        i++;
    if (!v || i == n)
        return 0;
    uint64_t x = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 0;
        uint64_t d = (uint64_t)(v[i] - '0');
        if (x > (limit - d) / 10)
            return 0;
        x = x * 10 + d;
    }
    *out = neg ? (int64_t)(0 - x) : (int64_t)x;
    return 1;
}

/* The claims checked for every algorithm: exp (an integer, in the future)
 * and sub (a valid account id). */
static int check_claims(const struct fields *f, int64_t now, char account[ACCOUNT_ID_MAX + 1],
                        int64_t *exp, const char **reason)
{
    int64_t e;
    if (!raw_int(f->exp, f->exp_len, &e)) {
        *reason = "missing or non-numeric exp";
        return -1;
    }
    if (e <= now) {
        *reason = "token expired";
        return -1;
    }
    const char *sub;
    size_t sub_len;
    if (!f->sub) {
        *reason = "missing sub";
        return -1;
    }
    if (!raw_string(f->sub, f->sub_len, &sub, &sub_len) || !validate_account_id(sub, sub_len)) {
        *reason = "sub is not a valid account id";
        return -1;
    }
    memcpy(account, sub, sub_len);
    account[sub_len] = '\0';
    *exp = e;
    return 0;
}

/* HS256: the MAC of the signing input, compared as its canonical text. */
static int check_hs256(const struct auth *a, const char *input, size_t input_len, const char *sig,
                       size_t sig_len, const char **reason)
{
    /* auth_verify's struct is const to its callers; the HMAC context it
     * points to is scratch state, re-initialised on every call (one
     * thread). */
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    char want[HS256_B64_LEN];
    if (!EVP_MAC_init(a->hmac, NULL, 0, NULL) ||
        !EVP_MAC_update(a->hmac, (const unsigned char *)input, input_len) ||
        !EVP_MAC_final(a->hmac, mac, &mac_len, sizeof(mac)) || mac_len != HS256_LEN) {
        *reason = "HMAC failed (OpenSSL)";
        return -1;
    }
    b64url_encode_mac(mac, want);
    if (sig_len != HS256_B64_LEN || CRYPTO_memcmp(sig, want, HS256_B64_LEN) != 0) {
        *reason = "bad signature or malformed token";
        return -1;
    }
    return 0;
}

/* Whether the last digit of n base64url digits carries no bits beyond the
 * decoded bytes: the one spelling of those bytes, as for HS256's MAC. */
static int b64url_canonical_end(const char *in, size_t n)
{
    int spare = n % 4 == 2 ? 4 : n % 4 == 3 ? 2 : 0;
    return n == 0 || ((b64url_digit[(unsigned char)in[n - 1]] - 1) & ((1 << spare) - 1)) == 0;
}

/* RS256 (RSASSA-PKCS1-v1_5) or ES256 (ECDSA, the signature R || S turned
 * into the DER OpenSSL reads) over the signing input, with the key parsed
 * at start-up. */
static int check_public_key(const struct auth *a, const char *input, size_t input_len,
                            const char *sig_b64, size_t sig_b64_len, const char **reason)
{
    *reason = "bad signature or malformed token";
    unsigned char sig[SIG_MAX];
    long n = b64url_decode(sig_b64, sig_b64_len, sig, sizeof(sig));
    if (n < 0 || (size_t)n != a->sig_len || !b64url_canonical_end(sig_b64, sig_b64_len))
        return -1;
    const unsigned char *der = sig;
    size_t der_len = (size_t)n;
    unsigned char der_buf[SIG_MAX + 16];
    if (a->alg == JWT_ALG_ES256) {
        size_t half = a->sig_len / 2;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, (int)half, NULL), *s = BN_bin2bn(sig + half, (int)half, NULL);
        int len = -1;
        if (es && r && s && ECDSA_SIG_set0(es, r, s)) {
            r = s = NULL; /* es owns them now */
            len = i2d_ECDSA_SIG(es, NULL);
            unsigned char *p = der_buf;
            len = len > 0 && (size_t)len <= sizeof(der_buf) ? i2d_ECDSA_SIG(es, &p) : -1;
        }
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        if (len <= 0)
            return -1;
        der = der_buf;
        der_len = (size_t)len;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, a->sha256, NULL, a->pkey) == 1 &&
             EVP_DigestVerify(ctx, der, der_len, (const unsigned char *)input, input_len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

static const char *alg_name(jwt_alg_t alg)
{
    return alg == JWT_ALG_HS256 ? "HS256" : alg == JWT_ALG_RS256 ? "RS256" : "ES256";
}

/* header.payload.signature, each unpadded base64url (RFC 7519), read the
 * same way for every algorithm; only the signature check differs. The
 * header is read first only to refuse another algorithm early; nothing of
 * the payload is parsed before the signature matched. */
int auth_verify(const struct auth *a, const char *token, size_t len, int64_t now,
                char account[ACCOUNT_ID_MAX + 1], int64_t *exp, const char **reason)
{
    if (len == 0) {
        *reason = "missing token";
        return -1;
    }
    if (len >= TOKEN_MAX) {
        *reason = "token too long";
        return -1;
    }
    if (!a->key) {
        *reason = "no key configured";
        return -1;
    }
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2) {
        *reason = "bad signature or malformed token";
        return -1;
    }
    unsigned char buf[TOKEN_MAX / 4 * 3];
    struct fields f;
    if (!decode_part(token, (size_t)(dot1 - token), buf, sizeof(buf), &f)) {
        *reason = "bad signature or malformed token";
        return -1;
    }
    /* typ is optional; when given it must say JWT. A "crit" header names
     * extensions that must be understood, and we understand none. */
    int head_ok = (!f.typ || string_is(f.typ, f.typ_len, "JWT", 1)) && !f.crit;
    if (!string_is(f.alg, f.alg_len, alg_name(a->alg), 0)) {
        *reason = "algorithm not allowed";
        return -1;
    }
    if (!head_ok) {
        *reason = "bad signature or malformed token";
        return -1;
    }
    const char *sig = dot2 + 1;
    size_t sig_len = len - (size_t)(sig - token), input_len = (size_t)(dot2 - token);
    int rc = a->alg == JWT_ALG_HS256 ? check_hs256(a, token, input_len, sig, sig_len, reason)
                                     : check_public_key(a, token, input_len, sig, sig_len, reason);
    if (rc != 0)
        return -1;
    if (!decode_part(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf, sizeof(buf), &f)) {
        *reason = "bad signature or malformed token";
        return -1;
    }
    return check_claims(&f, now, account, exp, reason);
}

void auth_free(struct auth *a)
{
    EVP_MAC_CTX_free(a->hmac);
    EVP_MAC_free(a->mac);
    EVP_PKEY_free(a->pkey);
    EVP_MD_free(a->sha256);
    free(a->key);
    a->key = NULL;
    a->hmac = NULL;
    a->mac = NULL;
    a->pkey = NULL;
    a->sha256 = NULL;
}
