/* Unit tests of common/wsframe: client frame headers, unmasking, server
 * frame headers, the accept key and close frame payloads. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "wsframe.h"

#define PARSE(arr, f) wsframe_parse(arr, sizeof(arr), f)

/* The payload of a close frame from a string literal. */
#define CLOSE(s) wsframe_close_code((const uint8_t *)(s), sizeof(s) - 1)

/* RFC 6455 section 5.7: a single-frame masked text message, "Hello". */
static const uint8_t hello_masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                       0x7f, 0x9f, 0x4d, 0x51, 0x58};

START_TEST(rfc_masked_hello)
{
    struct wsframe f;
    memset(&f, 0xAA, sizeof(f));
    ck_assert_int_eq(PARSE(hello_masked, &f), WSFRAME_OK);
    ck_assert_int_eq(f.fin, 1);
    ck_assert_int_eq(f.opcode, WS_OP_TEXT);
    ck_assert_uint_eq(f.header_len, 6);
    ck_assert_uint_eq(f.payload_len, 5);
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    ck_assert_mem_eq(f.mask, mask, 4);

    uint8_t payload[5];
    memcpy(payload, hello_masked + f.header_len, sizeof(payload));
    wsframe_unmask(payload, sizeof(payload), f.mask, 0);
    ck_assert_mem_eq(payload, "Hello", 5);
}
END_TEST

START_TEST(rfc_fragments_and_control)
{
    struct wsframe f;
    /* Section 5.7's fragmented "Hel" + "lo" and its ping, masked here
     * with a zero key as a client must mask. */
    static const uint8_t first[] = {0x01, 0x83, 0, 0, 0, 0, 'H', 'e', 'l'};
    static const uint8_t last[] = {0x80, 0x82, 0, 0, 0, 0, 'l', 'o'};
    static const uint8_t ping[] = {0x89, 0x85, 1, 2, 3, 4};
    static const uint8_t pong[] = {0x8a, 0x80, 1, 2, 3, 4};
    static const uint8_t close[] = {0x88, 0x82, 1, 2, 3, 4};
    static const uint8_t binary[] = {0x82, 0xfd, 1, 2, 3, 4};

    ck_assert_int_eq(PARSE(first, &f), WSFRAME_OK);
    ck_assert_int_eq(f.fin, 0);
    ck_assert_int_eq(f.opcode, WS_OP_TEXT);
    ck_assert_uint_eq(f.payload_len, 3);
    ck_assert_int_eq(PARSE(last, &f), WSFRAME_OK);
    ck_assert_int_eq(f.fin, 1);
    ck_assert_int_eq(f.opcode, WS_OP_CONT);
    ck_assert_uint_eq(f.payload_len, 2);
    ck_assert_int_eq(PARSE(ping, &f), WSFRAME_OK);
    ck_assert_int_eq(f.opcode, WS_OP_PING);
    ck_assert_uint_eq(f.payload_len, 5);
    ck_assert_int_eq(PARSE(pong, &f), WSFRAME_OK);
    ck_assert_int_eq(f.opcode, WS_OP_PONG);
    ck_assert_uint_eq(f.payload_len, 0);
    ck_assert_int_eq(PARSE(close, &f), WSFRAME_OK);
    ck_assert_int_eq(f.opcode, WS_OP_CLOSE);
    ck_assert_int_eq(PARSE(binary, &f), WSFRAME_OK);
    ck_assert_int_eq(f.opcode, WS_OP_BINARY);
    ck_assert_uint_eq(f.payload_len, 125);
    ck_assert_uint_eq(f.header_len, 6);
}
END_TEST

START_TEST(extended_lengths)
{
    struct wsframe f;
    /* RFC 6455 section 5.7: 256 bytes (16-bit) and 64 KiB (64-bit). */
    static const uint8_t len256[] = {0x82, 0xfe, 0x01, 0x00, 9, 8, 7, 6};
    static const uint8_t len64k[] = {0x82, 0xff, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 9, 8, 7, 6};
    static const uint8_t len126[] = {0x82, 0xfe, 0x00, 0x7e, 1, 2, 3, 4};
    static const uint8_t len65535[] = {0x82, 0xfe, 0xff, 0xff, 1, 2, 3, 4};
    static const uint8_t len_max[] = {0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 0xff, 1,    2,    3,    4};
    ck_assert_int_eq(PARSE(len256, &f), WSFRAME_OK);
    ck_assert_uint_eq(f.header_len, 8);
    ck_assert_uint_eq(f.payload_len, 256);
    static const uint8_t mask[4] = {9, 8, 7, 6};
    ck_assert_mem_eq(f.mask, mask, 4);
    ck_assert_int_eq(PARSE(len64k, &f), WSFRAME_OK);
    ck_assert_uint_eq(f.header_len, 14);
    ck_assert_uint_eq(f.payload_len, 65536);
    ck_assert_mem_eq(f.mask, mask, 4);
    ck_assert_int_eq(PARSE(len126, &f), WSFRAME_OK);
    ck_assert_uint_eq(f.payload_len, 126);
    ck_assert_int_eq(PARSE(len65535, &f), WSFRAME_OK);
    ck_assert_uint_eq(f.payload_len, 65535);
    ck_assert_int_eq(PARSE(len_max, &f), WSFRAME_OK);
    ck_assert_uint_eq(f.payload_len, UINT64_C(0x7fffffffffffffff));

    /* Longer encodings than needed are read as written. */
    static const uint8_t long16[] = {0x81, 0xfe, 0x00, 0x05, 1, 2, 3, 4};
    static const uint8_t long64[] = {0x81, 0xff, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4};
    static const uint8_t ping16[] = {0x89, 0xfe, 0x00, 0x7d, 1, 2, 3, 4};
    ck_assert_int_eq(PARSE(long16, &f), WSFRAME_OK);
    ck_assert_uint_eq(f.header_len, 8);
    ck_assert_uint_eq(f.payload_len, 5);
    ck_assert_int_eq(PARSE(long64, &f), WSFRAME_OK);
    ck_assert_uint_eq(f.header_len, 14);
    ck_assert_uint_eq(f.payload_len, 5);
    ck_assert_int_eq(PARSE(ping16, &f), WSFRAME_OK);
    ck_assert_uint_eq(f.payload_len, 125);

    /* The payload is not looked at: extra bytes change nothing. */
    uint8_t more[sizeof(len256) + 3] = {0};
    memcpy(more, len256, sizeof(len256));
    ck_assert_int_eq(PARSE(more, &f), WSFRAME_OK);
    ck_assert_uint_eq(f.header_len, 8);
    ck_assert_uint_eq(f.payload_len, 256);
}
END_TEST

START_TEST(incomplete_every_prefix)
{
    static const uint8_t len256[] = {0x82, 0xfe, 0x01, 0x00, 9, 8, 7, 6};
    static const uint8_t len64k[] = {0x82, 0xff, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 9, 8, 7, 6};
    static const uint8_t ping[] = {0x89, 0x80, 1, 2, 3, 4};
    const struct {
        const uint8_t *b;
        size_t len;
    } frames[] = {
        {hello_masked, 6},
        {len256, sizeof(len256)},
        {len64k, sizeof(len64k)},
        {ping, sizeof(ping)},
    };
    for (size_t k = 0; k < sizeof(frames) / sizeof(frames[0]); k++) {
        struct wsframe f;
        for (size_t n = 0; n < frames[k].len; n++) {
            /* An exact-size copy, so the sanitizer build catches over-reads. */
            uint8_t *copy = malloc(n ? n : 1);
            ck_assert_ptr_nonnull(copy);
            memcpy(copy, frames[k].b, n);
            ck_assert_msg(wsframe_parse(copy, n, &f) == WSFRAME_INCOMPLETE, "frame %zu prefix %zu",
                          k, n);
            free(copy);
        }
        ck_assert_int_eq(wsframe_parse(frames[k].b, frames[k].len, &f), WSFRAME_OK);
        ck_assert_uint_eq(f.header_len, frames[k].len);
    }
}
END_TEST

START_TEST(protocol_errors)
{
    struct wsframe f;
    static const uint8_t unmasked[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
    static const uint8_t unmasked_empty[] = {0x88, 0x00};
    ck_assert_int_eq(PARSE(unmasked, &f), WSFRAME_PROTOCOL);
    ck_assert_int_eq(PARSE(unmasked_empty, &f), WSFRAME_PROTOCOL);

    /* RSV1, RSV2, RSV3: no extension was negotiated. */
    for (int bit = 4; bit <= 6; bit++) {
        uint8_t b[6] = {(uint8_t)(0x81 | (1 << bit)), 0x80, 1, 2, 3, 4};
        ck_assert_msg(PARSE(b, &f) == WSFRAME_PROTOCOL, "rsv bit %d", bit);
    }

    /* Every opcode: the six known ones parse, the reserved ones do not. */
    for (int op = 0; op < 16; op++) {
        uint8_t b[6] = {(uint8_t)(0x80 | op), 0x80, 1, 2, 3, 4};
        int known = op <= 2 || (op >= 8 && op <= 10);
        ck_assert_msg(PARSE(b, &f) == (known ? WSFRAME_OK : WSFRAME_PROTOCOL), "opcode %d", op);
    }

    /* Control frames: FIN set and at most 125 bytes. */
    static const uint8_t ops[] = {WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
    for (size_t i = 0; i < sizeof(ops); i++) {
        uint8_t frag[6] = {ops[i], 0x80, 1, 2, 3, 4};
        uint8_t big[6] = {(uint8_t)(0x80 | ops[i]), 0xfe, 1, 2, 3, 4}; /* 258 */
        uint8_t big16[8] = {(uint8_t)(0x80 | ops[i]), 0xfe, 0x00, 0x7e, 1, 2, 3, 4};
        uint8_t big64[14] = {(uint8_t)(0x80 | ops[i]), 0xff, 0, 0, 0, 0, 0, 0, 0x01, 0, 1, 2, 3, 4};
        uint8_t ok[6] = {(uint8_t)(0x80 | ops[i]), 0xfd, 1, 2, 3, 4};
        ck_assert_int_eq(PARSE(frag, &f), WSFRAME_PROTOCOL);
        ck_assert_int_eq(PARSE(big, &f), WSFRAME_PROTOCOL);
        ck_assert_int_eq(PARSE(big16, &f), WSFRAME_PROTOCOL);
        ck_assert_int_eq(PARSE(big64, &f), WSFRAME_PROTOCOL);
        ck_assert_int_eq(PARSE(ok, &f), WSFRAME_OK);
        ck_assert_uint_eq(f.payload_len, 125);
    }

    /* A 64-bit length must have its top bit clear. */
    static const uint8_t top[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    static const uint8_t all[] = {0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 1,    2,    3,    4};
    ck_assert_int_eq(PARSE(top, &f), WSFRAME_PROTOCOL);
    ck_assert_int_eq(PARSE(all, &f), WSFRAME_PROTOCOL);
}
END_TEST

START_TEST(protocol_errors_early)
{
    /* A bad byte is refused as soon as it is there, without waiting for
     * the rest of the header. */
    struct wsframe f;
    static const uint8_t rsv[] = {0xc1};
    static const uint8_t op3[] = {0x83};
    static const uint8_t frag_ping[] = {0x09};
    static const uint8_t unmasked[] = {0x81, 0x05};
    static const uint8_t top[] = {0x82, 0xff, 0x80};
    static const uint8_t big_close[] = {0x88, 0xfe, 0x00, 0x7e};
    ck_assert_int_eq(PARSE(rsv, &f), WSFRAME_PROTOCOL);
    ck_assert_int_eq(PARSE(op3, &f), WSFRAME_PROTOCOL);
    ck_assert_int_eq(PARSE(frag_ping, &f), WSFRAME_PROTOCOL);
    ck_assert_int_eq(PARSE(unmasked, &f), WSFRAME_PROTOCOL);
    ck_assert_int_eq(PARSE(top, &f), WSFRAME_PROTOCOL);
    ck_assert_int_eq(PARSE(big_close, &f), WSFRAME_PROTOCOL);
}
END_TEST

START_TEST(unmask_in_pieces)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t plain[67], whole[67];
    for (size_t i = 0; i < sizeof(plain); i++)
        plain[i] = (uint8_t)(i * 7 + 3);
    memcpy(whole, plain, sizeof(whole));
    wsframe_unmask(whole, sizeof(whole), mask, 0);
    for (size_t i = 0; i < sizeof(plain); i++)
        ck_assert_uint_eq(whole[i], plain[i] ^ mask[i % 4]);

    /* Split at every pair of points: the same bytes as unmasking at once. */
    for (size_t a = 0; a <= sizeof(plain); a++)
        for (size_t b = a; b <= sizeof(plain); b++) {
            uint8_t buf[67];
            memcpy(buf, plain, sizeof(buf));
            wsframe_unmask(buf, a, mask, 0);
            wsframe_unmask(buf + a, b - a, mask, a);
            wsframe_unmask(buf + b, sizeof(buf) - b, mask, b);
            ck_assert_msg(memcmp(buf, whole, sizeof(buf)) == 0, "split %zu %zu", a, b);
        }

    /* The offset counts from the start of the payload, past 32 bits too. */
    uint8_t x[4] = {0, 0, 0, 0};
    wsframe_unmask(x, 4, mask, UINT64_C(0x100000001));
    static const uint8_t rotated[4] = {0xfa, 0x21, 0x3d, 0x37};
    ck_assert_mem_eq(x, rotated, 4);

    /* Masking is its own inverse; a zero-length call touches nothing. */
    wsframe_unmask(whole, sizeof(whole), mask, 0);
    ck_assert_mem_eq(whole, plain, sizeof(plain));
    wsframe_unmask(NULL, 0, mask, 3);
}
END_TEST

START_TEST(server_headers)
{
    uint8_t h[WS_HEADER_MAX];
    ck_assert_int_eq(WS_HEADER_MAX, 10);

    ck_assert_uint_eq(wsframe_header(h, WS_OP_TEXT, 0), 2);
    ck_assert_mem_eq(h, "\x81\x00", 2);
    ck_assert_uint_eq(wsframe_header(h, WS_OP_TEXT, 5), 2);
    ck_assert_mem_eq(h, "\x81\x05", 2); /* RFC 6455 unmasked "Hello" */
    ck_assert_uint_eq(wsframe_header(h, WS_OP_BINARY, 125), 2);
    ck_assert_mem_eq(h, "\x82\x7d", 2);
    ck_assert_uint_eq(wsframe_header(h, WS_OP_BINARY, 126), 4);
    ck_assert_mem_eq(h, "\x82\x7e\x00\x7e", 4);
    ck_assert_uint_eq(wsframe_header(h, WS_OP_BINARY, 256), 4);
    ck_assert_mem_eq(h, "\x82\x7e\x01\x00", 4);
    ck_assert_uint_eq(wsframe_header(h, WS_OP_TEXT, 65535), 4);
    ck_assert_mem_eq(h, "\x81\x7e\xff\xff", 4);
    ck_assert_uint_eq(wsframe_header(h, WS_OP_TEXT, 65536), 10);
    ck_assert_mem_eq(h, "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    ck_assert_uint_eq(wsframe_header(h, WS_OP_BINARY, UINT64_C(0x0102030405060708)), 10);
    ck_assert_mem_eq(h, "\x82\x7f\x01\x02\x03\x04\x05\x06\x07\x08", 10);
    ck_assert_uint_eq(wsframe_header(h, WS_OP_CLOSE, 2), 2);
    ck_assert_mem_eq(h, "\x88\x02", 2);
    ck_assert_uint_eq(wsframe_header(h, WS_OP_PING, 0), 2);
    ck_assert_mem_eq(h, "\x89\x00", 2);
    ck_assert_uint_eq(wsframe_header(h, WS_OP_PONG, 3), 2);
    ck_assert_mem_eq(h, "\x8a\x03", 2);

    static const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, UINT64_C(1) << 32};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
        ck_assert_uint_eq(wsframe_header(h, WS_OP_TEXT, lens[i]), wsframe_header_len(lens[i]));
    ck_assert_uint_eq(wsframe_header_len(125), 2);
    ck_assert_uint_eq(wsframe_header_len(126), 4);
    ck_assert_uint_eq(wsframe_header_len(65535), 4);
    ck_assert_uint_eq(wsframe_header_len(65536), 10);
}
END_TEST

START_TEST(server_header_round_trip)
{
    /* A server header with the mask bit and a key added is a client
     * header that parses back to the same values. */
    static const uint64_t lens[] = {0,   1,     125,   126,
                                    127, 65535, 65536, UINT64_C(0x7fffffffffffffff)};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        uint8_t b[WS_HEADER_MAX + 4];
        size_t n = wsframe_header(b, WS_OP_BINARY, lens[i]);
        b[1] |= 0x80;
        memcpy(b + n, "\x01\x02\x03\x04", 4);
        struct wsframe f;
        ck_assert_int_eq(wsframe_parse(b, n + 4, &f), WSFRAME_OK);
        ck_assert_uint_eq(f.header_len, n + 4);
        ck_assert_uint_eq(f.payload_len, lens[i]);
        ck_assert_int_eq(f.opcode, WS_OP_BINARY);
        ck_assert_int_eq(f.fin, 1);
    }
}
END_TEST

START_TEST(accept_key)
{
    char out[29];
    memset(out, 'x', sizeof(out));
    /* RFC 6455 section 1.3. */
    static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
    ck_assert_int_eq(wsframe_accept_key(key, strlen(key), out), 0);
    ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    /* Only key_len bytes are used: the rest of the buffer is not. */
    ck_assert_int_eq(wsframe_accept_key("dGhlIHNhbXBsZSBub25jZQ==junk", 24, out), 0);
    ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    /* Another worked example (the one Wikipedia's WebSocket article shows). */
    ck_assert_int_eq(wsframe_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", 24, out), 0);
    ck_assert_str_eq(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");

    /* SHA-1 of the GUID alone. */
    ck_assert_int_eq(wsframe_accept_key("", 0, out), 0);
    ck_assert_uint_eq(strlen(out), 28);

    char big[258];
    memset(big, 'A', sizeof(big));
    ck_assert_int_eq(wsframe_accept_key(big, 256, out), 0);
    ck_assert_uint_eq(strlen(out), 28);
    ck_assert_int_eq(out[27], '=');
    ck_assert_int_eq(wsframe_accept_key(big, 257, out), -1);
    ck_assert_int_eq(wsframe_accept_key(big, 258, out), -1);
}
END_TEST

START_TEST(close_codes)
{
    ck_assert_uint_eq(wsframe_close_code(NULL, 0), 1005);
    ck_assert_uint_eq(CLOSE(""), 1005);
    ck_assert_uint_eq(CLOSE("\x03"), 0);
    ck_assert_uint_eq(CLOSE("\x03\xe8"), 1000);
    ck_assert_uint_eq(CLOSE("\x03\xe8"
                            "bye"),
                      1000);
    ck_assert_uint_eq(CLOSE("\x03\xe9"
                            "caf\xc3\xa9"),
                      1001);
    ck_assert_uint_eq(CLOSE("\x03\xed"), 0); /* 1005 on the wire */
    ck_assert_uint_eq(CLOSE("\x03\xee"), 0); /* 1006 */
    ck_assert_uint_eq(CLOSE("\x03\xec"), 0); /* 1004 */
    ck_assert_uint_eq(CLOSE("\x03\xf7"), 0); /* 1015 */
    ck_assert_uint_eq(CLOSE("\x03\xf6"), 1014);
    ck_assert_uint_eq(CLOSE("\x0b\xb8"), 3000);
    ck_assert_uint_eq(CLOSE("\x03\xe7"), 0); /* 999 */
    ck_assert_uint_eq(CLOSE("\x11\x31"), 4401);
    ck_assert_uint_eq(CLOSE("\x11\x31"
                            "unauthorized"),
                      4401);
    ck_assert_uint_eq(CLOSE("\x13\x88"), 0); /* 5000 */
    ck_assert_uint_eq(CLOSE("\x03\xe8"
                            "\xff"),
                      0);
    ck_assert_uint_eq(CLOSE("\x03\xe8"
                            "caf\xc3"),
                      0); /* truncated */
    ck_assert_uint_eq(CLOSE("\x03\xe8"
                            "\xed\xa0\x80"),
                      0); /* surrogate */
    ck_assert_uint_eq(CLOSE("\x03\xe8"
                            "\xc0\x80"),
                      0); /* overlong */
}
END_TEST

START_TEST(close_codes_every_value)
{
    for (unsigned code = 0; code < 65536; code++) {
        uint8_t b[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        int valid = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                    (code >= 3000 && code <= 4999);
        ck_assert_msg(wsframe_close_code(b, 2) == (valid ? code : 0), "code %u", code);
    }
    static const unsigned never[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
        uint8_t b[4] = {(uint8_t)(never[i] >> 8), (uint8_t)never[i], 'o', 'k'};
        ck_assert_msg(wsframe_close_code(b, 4) == 0, "code %u", never[i]);
    }
}
END_TEST

static Suite *wsframe_suite(void)
{
    Suite *s = suite_create("wsframe");
    TCase *parse = tcase_create("parse");
    tcase_add_test(parse, rfc_masked_hello);
    tcase_add_test(parse, rfc_fragments_and_control);
    tcase_add_test(parse, extended_lengths);
    tcase_add_test(parse, incomplete_every_prefix);
    tcase_add_test(parse, protocol_errors);
    tcase_add_test(parse, protocol_errors_early);
    suite_add_tcase(s, parse);
    TCase *mask = tcase_create("unmask");
    tcase_add_test(mask, unmask_in_pieces);
    suite_add_tcase(s, mask);
    TCase *server = tcase_create("server");
    tcase_add_test(server, server_headers);
    tcase_add_test(server, server_header_round_trip);
    tcase_add_test(server, accept_key);
    suite_add_tcase(s, server);
    TCase *close = tcase_create("close");
    tcase_add_test(close, close_codes);
    tcase_add_test(close, close_codes_every_value);
    suite_add_tcase(s, close);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(wsframe_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
