/*
 * The identity provider as the relying party sees it: discovery, the JWKS
 * fetches (jwks.c caches the keys and says when an unknown kid may refetch
 * them), the authorization code exchange and the ID token verification. One
 * provider belongs to one configuration snapshot; a reload with the same
 * issuer carries the discovery document and keys over.
 */
#ifndef SSOGATE_OIDC_H
#define SSOGATE_OIDC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>

struct sg_config;
struct sg_oidc;
struct sg_oidc_exchange;
struct event_base;
struct evdns_base;
struct sg_signer;
struct sg_store;

#define SG_OIDC_REFRESH_S    3600 /* background refresh of discovery and keys */
#define SG_OIDC_MAX_DOCUMENT (256 * 1024)

/* How a code exchange ended; every value is one log reason and one metric label. */
enum sg_oidc_status {
    SG_OIDC_OK = 0,
    SG_OIDC_TOKEN_UNREACHABLE, /* network error or timeout at the token endpoint */
    SG_OIDC_TOKEN_ERROR,       /* the token endpoint answered an error or non-JSON */
    SG_OIDC_NO_ID_TOKEN,       /* the answer holds no id_token */
    SG_OIDC_JWS_INVALID,       /* signature, alg, header, kid: detail says which */
    SG_OIDC_CLAIMS_INVALID,    /* iss, aud, azp, exp, iat, nbf, nonce, sub: detail says which */
    SG_OIDC_USERINFO_FAILED,   /* idp.userinfo: the endpoint failed or answered no JSON object */
    SG_OIDC_USERINFO_INVALID,  /* idp.userinfo: its sub is not the ID token's (OIDC Core 5.3.2) */
    SG_OIDC_STATUS_COUNT
};

const char *sg_oidc_status_name(enum sg_oidc_status status);

/*
 * Creates the provider of cfg's idp (cfg borrowed; it must outlive the
 * provider, as the snapshot guarantees). previous (may be NULL) is the
 * provider being replaced: with the same issuer its discovery document and
 * keys are reused at once. client_key (borrowed, like cfg) signs the
 * private_key_jwt client assertions. Starts discovery (and JWKS) fetches in the
 * background, and returns the new provider.
 */
struct sg_oidc *sg_oidc_new(struct event_base *base, struct evdns_base *dns, struct sg_store *store,
                            const struct sg_config *cfg, const struct sg_signer *client_key,
                            const struct sg_oidc *previous);

/* Cancels the provider's fetches and frees it. NULL-safe. */
void sg_oidc_free(struct sg_oidc *oidc);

/* True once the discovery document is known. */
bool sg_oidc_ready(const struct sg_oidc *oidc);

/* Endpoints from discovery (borrowed; NULL before ready, or when not offered). */
const char *sg_oidc_authorization_endpoint(const struct sg_oidc *oidc);
const char *sg_oidc_end_session_endpoint(const struct sg_oidc *oidc);

/*
 * Called once when an exchange ends. On SG_OIDC_OK, claims (the verified ID
 * token's claims) and id_token are borrowed for the call. detail is a short
 * static reason for the log and metrics (e.g. "exp", "bad_signature").
 */
typedef void (*sg_oidc_exchange_cb)(enum sg_oidc_status status, const char *detail, yajl_val claims,
                                    const char *id_token, void *arg);

/*
 * Exchanges an authorization code (with its PKCE verifier) at the token
 * endpoint, then verifies the ID token against the JWKS and the expected
 * nonce. With idp.userinfo, the userinfo endpoint is asked next with the
 * access token: its sub must be the ID token's, and its other claims join
 * those of the ID token (which wins where both have one). Strings are copied. Returns a handle
 * valid until the callback runs or sg_oidc_exchange_cancel (the callback never runs before this
 * returns), or NULL when discovery is not done yet or the token endpoint is refused.
 */
struct sg_oidc_exchange *sg_oidc_exchange_code(struct sg_oidc *oidc, const char *code,
                                               const char *verifier, const char *nonce,
                                               sg_oidc_exchange_cb cb, void *arg);

/*
 * Verifies a back-channel logout token (copied): its signature against the
 * JWKS (an unknown kid refetches the keys, as for ID tokens) and its claims
 * (sg_jwt_validate_logout_token). cb gets the token's claims on SG_OIDC_OK.
 * Returns a handle valid until the callback runs or sg_oidc_exchange_cancel
 * (the callback never runs before this returns), or NULL when discovery is
 * not done yet.
 */
struct sg_oidc_exchange *sg_oidc_verify_logout(struct sg_oidc *oidc, const char *token,
                                               sg_oidc_exchange_cb cb, void *arg);

/* The issuer as the discovery document states it (borrowed; NULL before ready). */
const char *sg_oidc_issuer(const struct sg_oidc *oidc);

/*
 * Checks the iss parameter of an authorization response (RFC 9207; iss NULL
 * when the callback has none): it must be the issuer as discovery states it,
 * and it must be there when discovery says authorization_response_iss_parameter_supported.
 * Returns NULL when the response may be this IdP's (or discovery is not done
 * yet: no code can be exchanged then), else the reason: "iss_missing" or
 * "iss_mismatch".
 */
const char *sg_oidc_response_iss_problem(const struct sg_oidc *oidc, const char *iss);

/* Cancels an exchange: its callback will not run. */
void sg_oidc_exchange_cancel(struct sg_oidc_exchange *exchange);

/* The redirect URI registered at the IdP: {public_url}/_sso/callback (borrowed). */
const char *sg_oidc_redirect_uri(const struct sg_oidc *oidc);

#endif
