#include "ssogate/pages.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>

#include "ssogate/common.h"
#include "ssogate/evmem.h"

/* One stylesheet for every page of the gateway: inline (no external assets), text and controls at
 * 4.5:1 contrast or more, and a focus ring that shows on light and dark backgrounds alike. */
static const char stylesheet[] =
    "*{box-sizing:border-box}"
    "body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;margin:0;"
    "background:#f4f6f8;color:#1b2733}"
    "header{display:flex;align-items:center;gap:1.5rem;padding:0 1.5rem;min-height:3.25rem;"
    "background:#1b2733;color:#fff}"
    "header .brand{font-weight:700;flex:1}"
    "header nav{display:flex;gap:1.25rem}"
    "header a{color:#dbe6f5}"
    "main{max-width:38rem;margin:3rem auto;background:#fff;border:1px solid #d6dde4;"
    "border-radius:8px;padding:2rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}"
    "h1{font-size:1.5rem;line-height:1.25;margin:0 0 1rem}"
    "h2{font-size:1.1rem;margin:0 0 .5rem}"
    "p{margin:0 0 1rem}"
    "a{color:#0b57d0}"
    "code{font-size:.95em;background:#eef1f5;padding:0 .25rem;border-radius:3px}"
    "button{font:inherit;font-weight:600;background:#0b57d0;color:#fff;border:1px solid #0b57d0;"
    "border-radius:4px;padding:.55rem 1.2rem;cursor:pointer}"
    "button:hover{background:#0842a0}"
    "button.secondary{background:#fff;color:#0b57d0}"
    "button.secondary:hover{background:#eef3fd}"
    "a:focus,button:focus{outline:3px solid #f9ab00;outline-offset:2px}"
    "form{margin:0}"
    "section{border-top:1px solid #d6dde4;padding-top:1.25rem;margin-top:1.5rem}"
    ".hint{color:#4a5866;font-size:.95rem}"
    ".banner{padding:.75rem 1rem;border-radius:4px;margin:0 0 1rem}"
    ".ok{background:#e6f4ea;color:#0d652d;border:1px solid #34a853}"
    ".warn{background:#fef7e0;color:#6b4500;border:1px solid #f9ab00}"
    ".state{font-weight:700}"
    ".ref{color:#4a5866;font-size:.85rem;margin:1.5rem 0 0}";

static const struct {
    int status;
    const char *reason;
} reasons[] = {
    {200, "OK"},
    {302, "Found"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {409, "Conflict"},
    {413, "Content Too Large"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
};

const char *sg_page_reason(int status)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        if (reasons[i].status == status)
            return reasons[i].reason;
    }
    return "Error";
}

char *sg_html_escape(const char *text)
{
    return sg_evmem_take(evhttp_htmlescape(text));
}

void sg_page_send_html(struct evhttp_request *req, int status, const char *title,
                       const char *body_html, const char *request_id)
{
    struct evbuffer *body = evbuffer_new();
    char *title_html = sg_evmem_take(evhttp_htmlescape(title));

    evbuffer_add_printf(body,
                        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
                        "<title>%s</title><style>%s</style></head>"
                        "<body><header><span class=\"brand\">Log in with IT Complete</span>"
                        "<nav aria-label=\"Where to go next\"><a href=\"/\">Back to the PSA</a>"
                        "<a href=\"/_sso/settings\">My Settings</a></nav></header>"
                        "<main><h1>%s</h1>%s",
                        title_html, stylesheet, title_html, body_html);
    if (request_id != NULL)
        evbuffer_add_printf(
            body,
            "<p class=\"ref\">If you contact your administrator, quote this reference: "
            "<code>%s</code></p>",
            request_id);
    evbuffer_add_printf(body, "</main></body></html>\n");

    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", "text/html; charset=utf-8");
    evhttp_add_header(headers, "Cache-Control", "no-store");
    evhttp_add_header(headers, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(headers, "X-Frame-Options", "DENY");
    evhttp_add_header(headers, "Referrer-Policy", "same-origin");
    if (request_id != NULL)
        evhttp_add_header(headers, "X-Request-Id", request_id);
    evhttp_add_header(headers, "Content-Security-Policy",
                      "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: "
                      "http:; frame-ancestors 'none'");
    sg_reply(req, status, sg_page_reason(status), body);
    evbuffer_free(body);
    free(title_html);
}

void sg_page_send(struct evhttp_request *req, int status, const char *title, const char *message,
                  const char *request_id)
{
    char *message_html = sg_evmem_take(evhttp_htmlescape(message));
    char *body = sg_asprintf("<p>%s</p>", message_html);
    sg_page_send_html(req, status, title, body, request_id);
    free(body);
    free(message_html);
}

void sg_reply(struct evhttp_request *req, int status, const char *reason, struct evbuffer *body)
{
    if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        evhttp_send_reply(req, status, reason, body);
        return;
    }
    size_t len = body != NULL ? evbuffer_get_length(body) : 0;
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    if (status >= 200 && status != 204 && status != 304 &&
        evhttp_find_header(headers, "Content-Length") == NULL) {
        char text[24];
        snprintf(text, sizeof(text), "%zu", len);
        evhttp_add_header(headers, "Content-Length", text);
    }
    if (body != NULL)
        evbuffer_drain(body, len);
    evhttp_send_reply(req, status, reason, NULL);
}
