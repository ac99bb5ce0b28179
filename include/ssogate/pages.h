/*
 * The gateway's own HTML pages: one small shared stylesheet, no external
 * assets, wording that says what happened and what to do next.
 */
#ifndef SSOGATE_PAGES_H
#define SSOGATE_PAGES_H

struct evhttp_request;

/*
 * Sends a complete HTML page with status. title and message are plain text
 * (escaped here); request_id (may be NULL) is shown so that operators can
 * find the log line. All strings are borrowed.
 */
void sg_page_send(struct evhttp_request *req, int status, const char *title, const char *message,
                  const char *request_id);

/* The reason phrase of a status code ("Bad Gateway"). */
const char *sg_page_reason(int status);

#endif
