/*
 * The client's address. Without trusted proxies it is the connection's peer.
 * Behind proxies the gateway trusts (a load balancer, a TLS terminator: the
 * `trusted_proxies` of the configuration), it is the address those proxies
 * say they forwarded for, read from X-Forwarded-For from the right: every
 * element a trusted proxy appended is passed over, and the first address
 * not in the trusted set is the client (nginx's real_ip with
 * real_ip_recursive on). An element a client wrote to the left of it is
 * never taken, so sending X-Forwarded-For does not choose an address.
 *
 * The address is what logins in flight are counted under (loginflight.h)
 * and what the access log names. What the upstream receives in
 * X-Forwarded-For is not changed by it (proxy.c appends the peer).
 */
#ifndef SSOGATE_CLIENTADDR_H
#define SSOGATE_CLIENTADDR_H

#include <sys/socket.h>

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evkeyvalq;

/* Address blocks in one list (trusted_proxies, metrics_from). */
#define SG_MAX_ADDRESS_BLOCKS 64
/* X-Forwarded-For elements looked at, from the right; past them the last
 * trusted hop is the client. */
#define SG_FORWARDED_MAX_HOPS 32
#define SG_ADDR_TEXT_SIZE     INET6_ADDRSTRLEN

/* An IPv4 or IPv6 socket address. */
union sg_sockaddr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* An address block: family AF_INET (addr[0..4)) or AF_INET6 (addr[0..16)). */
struct sg_cidr {
    sa_family_t family;
    uint8_t bits;
    unsigned char addr[16];
};

/*
 * Parses "ADDRESS" or "ADDRESS/BITS": a dotted-quad IPv4 or an IPv6 address
 * (no brackets, no zone), BITS at most 32 or 128; an address alone is a
 * block of one. The bits past the prefix must be zero (10.0.0.1/8 is refused
 * as the likely typo it is). An IPv4-mapped block (::ffff:10.0.0.0/104) is
 * the IPv4 block it maps (10.0.0.0/8), as peers are matched. Returns 0, or
 * SG_EINVAL with *why naming the problem (a static string).
 */
int sg_cidr_parse(const char *text, struct sg_cidr *out, const char **why);

/* Whether sa lies in one of set[0..n): an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, a dual-stack listener's IPv4 peer) counts as IPv4. */
bool sg_cidr_match(const struct sg_cidr *set, size_t n, const struct sockaddr *sa);

/*
 * Parses one X-Forwarded-For element, text[0..len) without surrounding
 * spaces: an IPv4 or IPv6 address, the IPv6 one bare or in brackets, either
 * with a ":port" after it (some balancers add one; it is dropped). Returns
 * false for anything else ("unknown", names, RFC 7239 obfuscated tokens).
 */
bool sg_forwarded_parse(const char *text, size_t len, union sg_sockaddr *out);

/*
 * The client of a request that came from peer with headers (the request's
 * input headers, every X-Forwarded-For line of them in order, as one list).
 * *out is the peer unless peer is in set[0..n); then the walk from the right
 * described above: it stops at the first element not in the set, which is
 * the client; at an element that is no address, or after
 * SG_FORWARDED_MAX_HOPS elements, the last trusted hop is; when every
 * element is trusted, the leftmost is. Returns the number of elements taken
 * as hops (0: *out is the peer).
 */
unsigned sg_client_addr(const struct sg_cidr *set, size_t n, const struct sockaddr *peer,
                        const struct evkeyvalq *headers, union sg_sockaddr *out);

/* sa as text (an IPv4-mapped IPv6 address as IPv4); "unknown" for another
 * family. */
void sg_addr_text(const struct sockaddr *sa, char out[SG_ADDR_TEXT_SIZE]);

/*
 * Connections counted by address (limits.connections_per_address): keys of
 * 16 bytes (loginflight.h's sg_loginaddr: an IPv4 address, or an IPv6 /64),
 * in a hash table keyed with a random seed, as the client chooses the
 * address. O(1) a connection; an address's entry goes when its count does.
 */
struct sg_addrcount;

struct sg_addrcount *sg_addrcount_new(void);
void sg_addrcount_free(struct sg_addrcount *ac);
/* One more connection of key: returns its count with this one. */
size_t sg_addrcount_add(struct sg_addrcount *ac, const unsigned char key[16]);
/* One fewer (key was added). */
void sg_addrcount_remove(struct sg_addrcount *ac, const unsigned char key[16]);
/* The addresses counted. */
size_t sg_addrcount_size(const struct sg_addrcount *ac);

#endif
