/*
 * The gateway's own HTML pages: one small shared stylesheet, no external
 * assets, wording that says what happened and what to do next.
 */
#ifndef SSOGATE_PAGES_H
#define SSOGATE_PAGES_H

struct evbuffer;
struct evhttp_request;

/*
 * Sends a complete HTML page with status. title and message are plain text
 * (escaped here); request_id (may be NULL) is shown so that operators can
 * find the log line. All strings are borrowed.
 */
void sg_page_send(struct evhttp_request *req, int status, const char *title, const char *message,
                  const char *request_id);

/*
 * Sends a page whose main content is body_html, trusted markup the caller
 * built with every outside value escaped (sg_html_escape). title is plain text.
 */
void sg_page_send_html(struct evhttp_request *req, int status, const char *title,
                       const char *body_html, const char *request_id);

/* HTML-escapes text; hands back a new string. */
char *sg_html_escape(const char *text);

/* The reason phrase of a status code ("Bad Gateway"). */
const char *sg_page_reason(int status);

/*
 * Sends the answer to req with status, reason and body (may be NULL; its
 * bytes are taken), as evhttp_send_reply does, but right for a HEAD: the
 * body's length in Content-Length and no body. evhttp_send_reply writes a
 * HEAD answer's body without a length, which a client reads as the start of
 * the next answer on the connection. Every answer the gateway makes itself
 * goes through here.
 */
void sg_reply(struct evhttp_request *req, int status, const char *reason, struct evbuffer *body);

#endif
