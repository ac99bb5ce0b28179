/*
 * Where the gateway may send a browser after a login: only a path of this
 * site. Outside input (return_to, the URI of a protected page) goes through
 * this check before it becomes a Location header.
 */
#ifndef SSOGATE_REDIRECT_H
#define SSOGATE_REDIRECT_H

#include <stdbool.h>

#define SG_REDIRECT_MAX 2048 /* bytes of a redirect target */

/*
 * True when target is a same-origin relative path: it starts with one "/",
 * not "//" or "/\" (which browsers take for another host), holds no
 * backslash, no control, space or non-ASCII byte, and is at most
 * SG_REDIRECT_MAX bytes.
 */
bool sg_redirect_target_valid(const char *target);

#endif
