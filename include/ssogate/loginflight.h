/*
 * The logins this process started and that have not come back yet, by
 * client address, so that at limits.logins_in_flight one client cannot lock
 * every other one out: the login to give up is the oldest of the address
 * that holds the most (a flooder loses its own first; a browser holds one or
 * two). Every operation is O(1) on average (hash tables; the addresses are
 * kept in lists by how many logins they hold, and a count moves by one at a
 * time), so a full table costs an attacker's login no scan.
 *
 * It knows state names and addresses only; the states themselves are where
 * login.c keeps them (memory, LMDB or PostgreSQL).
 */
#ifndef SSOGATE_LOGINFLIGHT_H
#define SSOGATE_LOGINFLIGHT_H

#include "ssogate/loginstate.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* A client address as logins are counted by it: an IPv4 address (IPv4-mapped
 * IPv6 ones included) or an IPv6 /64 prefix, one site's usual allocation. */
struct sg_loginaddr {
    unsigned char bytes[16];
};

/* Room for an address written by sg_loginaddr_format ("2001:db8::/64"). */
#define SG_LOGINADDR_TEXT_SIZE 52

/* The address of sa (borrowed); an unknown family counts as one address of its own. */
void sg_loginaddr_of(const struct sockaddr *sa, struct sg_loginaddr *out);

/* Writes a for a log line: "192.0.2.1", or "2001:db8:1:2::/64". */
void sg_loginaddr_format(const struct sg_loginaddr *a, char out[SG_LOGINADDR_TEXT_SIZE]);

struct sg_loginflight;

struct sg_loginflight *sg_loginflight_new(void);

/* Frees the table. NULL-safe. */
void sg_loginflight_free(struct sg_loginflight *lf);

/*
 * Notes that a login started at created (seconds) by addr (borrowed) is
 * kept under state (borrowed, a token). When more than max are noted, the
 * oldest is forgotten (its callback probably came to another process).
 */
void sg_loginflight_add(struct sg_loginflight *lf, const char *state,
                        const struct sg_loginaddr *addr, int64_t created, size_t max);

/* Forgets state (borrowed, any string or NULL): its callback came. Nothing when it is not noted. */
void sg_loginflight_remove(struct sg_loginflight *lf, const char *state);

/* Forgets up to max logins started at or before now - SG_LOGINSTATE_TTL_S, oldest first. */
void sg_loginflight_expire(struct sg_loginflight *lf, int64_t now, size_t max);

/* The number of logins noted. */
size_t sg_loginflight_count(const struct sg_loginflight *lf);

/* The number of logins noted for addr (borrowed). */
size_t sg_loginflight_held(const struct sg_loginflight *lf, const struct sg_loginaddr *addr);

/*
 * Chooses the login to give up for a new one from newcomer (borrowed): the
 * oldest of the address holding the most, the newcomer's own when it holds
 * as many (a flooder then gives up its own even when it holds no more than
 * a user does); of several others, the one that came to that number first.
 * Forgets it, and copies its state name into state, its address into *addr
 * and the number that address held into *held. Returns false when none is
 * noted.
 */
bool sg_loginflight_evict(struct sg_loginflight *lf, const struct sg_loginaddr *newcomer,
                          char state[SG_LOGINSTATE_TOKEN_SIZE], struct sg_loginaddr *addr,
                          size_t *held);

#endif
