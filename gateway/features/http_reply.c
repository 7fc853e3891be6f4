#include "http_reply.h"

#include <stdlib.h>
#include <string.h>

#include "httpstatus.h"

int http_write_status(struct lws *wsi, int status, const char *body)
{
    char buf[LWS_PRE + 1024];
    char *p = buf + LWS_PRE;
    int n = http_format_status(p, sizeof(buf) - LWS_PRE, status, "", body);
    if (n < 0)
        return -1;
    return lws_write(wsi, (unsigned char *)p, (size_t)n, LWS_WRITE_HTTP_HEADERS) < n ? -1 : 0;
}

/* Whether the connection closes after this answer. Only a connection's
 * first request is routed to /ws or /sse (README.md, "Server-Sent
 * Events"); a browser reuses an idle connection for its next request, and
 * an EventSource's GET /sse sent on one kept alive by lws would get 404.
 * So answers to browsers close the connection: every request of a page
 * carries Sec-Fetch-Mode (current browsers) or, for a POST, an Origin.
 * Producers, scrapers and health checks keep theirs. */
static int closes_after(struct lws *wsi)
{
    static const char fetch_mode[] = "sec-fetch-mode:";
    return lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) > 0 ||
           lws_hdr_custom_length(wsi, fetch_mode, (int)sizeof(fetch_mode) - 1) >= 0;
}

int http_respond(struct lws *wsi, int status, const char *type, const char *body, size_t len)
{
    unsigned char hdr[LWS_PRE + 512];
    unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;
    int close_after = closes_after(wsi);
    if (lws_add_http_common_headers(wsi, (unsigned int)status, type, len, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        (close_after && lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                                     (const unsigned char *)"close", 5, &p, end)) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    unsigned char *out = malloc(LWS_PRE + len + 1);
    if (!out)
        return -1;
    memcpy(out + LWS_PRE, body, len);
    int n = lws_write(wsi, out + LWS_PRE, len, LWS_WRITE_HTTP_FINAL);
    free(out);
    if (n < (int)len)
        return -1;
    return close_after || lws_http_transaction_completed(wsi) ? -1 : 0;
}

static void deferred_free(struct http_deferred *d)
{
    free(d->answer);
    d->free_req(d);
}

int http_deferred_due(struct http_deferred *d)
{
    if (d->pending > 0)
        return 0;
    if (!d->wsi) {
        deferred_free(d);
        return 0;
    }
    return 1;
}

void http_deferred_answer(struct http_deferred *d, int status, json_t *body)
{
    d->status = status;
    d->answer = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (d->wsi)
        lws_callback_on_writable(d->wsi);
}

int http_deferred_writeable(struct lws *wsi, struct http_deferred *d)
{
    if (!d->answer)
        return 0;
    int rc = http_respond(wsi, d->status, "application/json", d->answer, strlen(d->answer));
    lws_set_opaque_user_data(wsi, NULL);
    deferred_free(d);
    return rc;
}

void http_deferred_detach(struct http_deferred *d)
{
    d->wsi = NULL;
    if (d->pending == 0)
        deferred_free(d);
}
