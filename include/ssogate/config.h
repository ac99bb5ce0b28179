/*
 * The configuration: a JSON file read with yajl into these typed structs and
 * validated whole before use. A loaded configuration is immutable and
 * reference-counted: a reload builds a new one and swaps it in only when it
 * loaded completely; requests keep a reference to the one they began with.
 */
#ifndef SSOGATE_CONFIG_H
#define SSOGATE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sg_cidr;

/* Where a configuration error is, and what it is. Filled by sg_config_load. */
struct sg_config_error {
    char file[256];    /* the file that was being read */
    char key[256];     /* JSON key path, e.g. "upstream.pool_size" or "listeners[1].port" */
    char message[512]; /* what is wrong */
};

/* Parsed URL: scheme http or https only. */
struct sg_url {
    char *text; /* the URL as configured, without a trailing slash */
    bool https;
    char *host;    /* host name or address, without brackets for IPv6 */
    uint16_t port; /* explicit port or the scheme's default */
    char *path;    /* path part, "" when none (never ends with '/') */
};

#define SG_MAX_CLAIM_HEADERS 32

/* A header the upstream gets from a claim of the login (claim_headers). */
struct sg_claim_header {
    char *name;    /* a token, not one the gateway owns */
    char *pointer; /* RFC 6901 */
};

struct sg_listener_config {
    char *address;  /* e.g. "127.0.0.1" or "::1" */
    uint16_t port;  /* 0 = any free port (tests read it back from the log) */
    char *tls_cert; /* PEM certificate chain file, NULL for plain http */
    char *tls_key;  /* PEM private key file, NULL for plain http */
};

enum sg_paths_mode {
    SG_PATHS_CASE_SENSITIVE = 0,
    SG_PATHS_CASE_INSENSITIVE, /* IIS/Windows: /APP/x is /app/x */
};

enum sg_escaped_slashes {
    SG_ESCAPED_SLASHES_REFUSE = 0,
    SG_ESCAPED_SLASHES_KEEP, /* %2F forwarded unchanged; routes see '/' */
};

enum sg_host_header {
    SG_HOST_HEADER_PUBLIC = 0, /* the authority of public_url */
    SG_HOST_HEADER_UPSTREAM,   /* the authority of upstream.url */
};

struct sg_upstream_config {
    struct sg_url url;
    char *ca_file;                /* CA bundle for an https upstream, NULL = system store */
    uint32_t connect_timeout_ms;  /* default 2000 */
    uint32_t response_timeout_ms; /* time to the response headers, and between body reads; default
                                     30000 */
    uint32_t pool_size;           /* keep-alive connections kept, default 64 */
    enum sg_paths_mode paths;
    enum sg_escaped_slashes escaped_slashes;
    enum sg_host_header host_header;
    char *host; /* derived: the Host and X-Forwarded-Host sent upstream ("host[:port]") */
    uint32_t websocket_idle_timeout_s; /* a tunnel without traffic is closed; default 300 */
};

/* How an SSO login in link mode learns whether the linked PSA user may sign in (B9). */
enum sg_whoami_at_login {
    SG_WHOAMI_AT_LOGIN_ASSERTION = 0, /* ask whoami with the new session's assertion */
    SG_WHOAMI_AT_LOGIN_LINK,          /* the facts kept with the user link (links.h) */
    SG_WHOAMI_AT_LOGIN_SKIP,          /* no check at login: only the link-time checks */
};

struct sg_whoami_config {
    char *path;   /* e.g. "/api/whoami" */
    char *tenant; /* JSON pointers (RFC 6901) into the whoami answer */
    char *user;
    char *admin;
    char *kind;
    char *active;
    char *staff_kind; /* value of "kind" that means staff, default "staff" */
    enum sg_whoami_at_login at_login;
};

/* Where the login page gains the "Log in with IT Complete" block. */
enum sg_button_position {
    SG_BUTTON_AFTER = 0, /* right after the marker */
    SG_BUTTON_BEFORE,    /* right before it */
};

struct sg_login_button_config {
    char *marker; /* a literal of the PSA's login page, e.g. "</form>"; NULL: after <body> */
    enum sg_button_position position;
};

struct sg_psa_config {
    char *login_path;  /* the PSA's own login page, default "/login" */
    char *home_path;   /* default "/" */
    char *logout_path; /* the PSA's sign-out: also ends the gateway session, default "/logout" */
    struct sg_whoami_config whoami;
    struct sg_login_button_config login_button;
};

enum sg_token_auth {
    SG_TOKEN_AUTH_CLIENT_SECRET_BASIC = 0,
    SG_TOKEN_AUTH_CLIENT_SECRET_POST,
    SG_TOKEN_AUTH_PRIVATE_KEY_JWT, /* RFC 7523 2.2: a JWT signed with client_key_file */
};

struct sg_claims_config {
    char *tenant;      /* claim carrying the IdP tenant, default "tenant" */
    char *master;      /* default "master" */
    char *module_urls; /* default "module_urls" */
    char *module;      /* the PSA's member of an object of module URLs, default "bms" */
    char *active;      /* default "active" */
    char *email;       /* default "email" */
};

struct sg_idp_config {
    struct sg_url issuer;
    char *client_id;
    char *client_secret;         /* resolved from client_secret_file or client_secret_env */
    char *client_key_file;       /* private_key_jwt: EC P-256, Ed25519 or RSA private key (PEM) */
    char **scopes;               /* NULL-terminated; default openid, email, profile */
    char *ca_file;               /* NULL = system store */
    bool allow_insecure_http;    /* explicit opt-in for a plain-http IdP (loopback tests) */
    uint32_t connect_timeout_ms; /* default 2000 */
    uint32_t timeout_ms;         /* whole exchange, default 10000 */
    uint32_t clock_skew_s;       /* default 60 */
    enum sg_token_auth token_auth;
    bool userinfo;     /* also ask the userinfo endpoint for claims after the token exchange */
    char **algorithms; /* NULL-terminated allow-list, default RS256 PS256 ES256 EdDSA */
    struct sg_claims_config claims;
};

enum sg_auth_mode {
    SG_AUTH_NONE = 0,
    SG_AUTH_OPTIONAL,
    SG_AUTH_REQUIRED,
};

struct sg_route_config {
    char *prefix;
    enum sg_auth_mode auth;
};

enum sg_identity_mode {
    SG_IDENTITY_LINK = 0,
    SG_IDENTITY_CLAIMS,
};

/* The gateway's own cookies; their table (names, attributes) is in
 * cookies.c. Every one is removed from every Cookie line before a request
 * goes upstream. */
enum sg_cookie_kind {
    SG_COOKIE_SESSION = 0, /* session.cookie_name */
    SG_COOKIE_LOGIN,       /* NAME_login: binds a login in flight to its browser */
    SG_COOKIE_CSRF,        /* NAME_csrf: My Settings' double-submit token */
    SG_COOKIE__COUNT
};

struct sg_session_config {
    char *cookie_name; /* default "ssogate"; "__Host-" is prepended when public_url is https */
    char *cookies[SG_COOKIE__COUNT + 1]; /* derived by sg_cookies_names (cookies.h): the full
                                          * names, then NULL */
    uint32_t idle_timeout_s;             /* default 1800 */
    uint32_t absolute_timeout_s;         /* default 43200 */
};

struct sg_limits_config {
    uint32_t header_bytes; /* default 16384 */
    uint64_t body_bytes;   /* default 10 MiB */
    uint64_t
        body_memory_bytes; /* requests being received, together; default max(256 MiB, body_bytes) */
    uint32_t connections;  /* default 10000 */
    uint32_t tunnels;      /* WebSocket tunnels at once: default connections / 2 */
    uint32_t connections_per_address; /* connections of one client address, 0 (default): no limit */
    uint32_t logins_in_flight;        /* default 10000 */
    uint32_t client_timeout_s;        /* idle/slow client timeout, default 30 */
    uint32_t min_body_rate; /* bytes/s a request keeps up after client_timeout_s, default 1024 */
};

enum sg_store_type {
    SG_STORE_TYPE_LMDB = 0,   /* one host: data_dir only */
    SG_STORE_TYPE_POSTGRESQL, /* several hosts: PostgreSQL, data_dir as each host's cache */
};

struct sg_store_config {
    enum sg_store_type type;
    char *conninfo;                /* postgresql: from conninfo, conninfo_file or conninfo_env */
    uint32_t pool_size;            /* connections per process, default 4 */
    uint32_t statement_timeout_ms; /* default 2000 */
    uint32_t cache_ttl_s;          /* how long a cached session is trusted unchecked, default 30 */
};

struct sg_region_config {
    char *name;       /* "US", "UK", "APAC" or another name */
    char *module_url; /* expected module URL: the region's default or the configured one */
};

struct sg_assertion_config {
    char *
        key_file; /* PEM private key (EC P-256 or Ed25519); NULL = generated and kept in data_dir */
    uint32_t ttl_s; /* default 60, at most 300 */
};

enum sg_log_level {
    SG_LOG_DEBUG = 0,
    SG_LOG_INFO,
    SG_LOG_WARN,
    SG_LOG_ERROR,
};

struct sg_config {
    int refcount;
    char *path; /* the file it was loaded from */
    struct sg_listener_config *listeners;
    size_t listener_count; /* at least 1 */
    /* Peers whose X-Forwarded-For names the client (clientaddr.h); none by default. */
    struct sg_cidr *trusted_proxies;
    size_t trusted_proxy_count;
    /* Clients /_sso/metrics answers (clientaddr.h); by default loopback only. */
    struct sg_cidr *metrics_from;
    size_t metrics_from_count;
    struct sg_url public_url;
    struct sg_upstream_config upstream;
    struct sg_psa_config psa;
    struct sg_idp_config *idp; /* NULL when no IdP is configured (plain proxy) */
    char **required_amr;       /* NULL-terminated, default otp, mfa */
    struct sg_region_config region;
    struct sg_session_config session;
    struct sg_route_config *routes; /* longest prefix wins; none = every path "optional" */
    size_t route_count;
    /* claim_headers: header name -> JSON pointer into the login's claims (identity.h) */
    struct sg_claim_header *claim_headers;
    size_t claim_header_count;
    const char **claim_header_names; /* derived, NULL-terminated: stripped from every client */
    enum sg_identity_mode identity;
    char *data_dir;
    struct sg_store_config store;
    struct sg_limits_config limits;
    struct sg_assertion_config assertion;
    enum sg_log_level log_level;
    bool access_log;          /* default true */
    uint32_t workers;         /* default 1 */
    uint32_t drain_timeout_s; /* SIGTERM drain bound, default 10 */
};

/*
 * Loads and validates the configuration in path. On success returns 0 and
 * hands back a new configuration with a reference count of 1 in *out. On
 * failure returns SG_ECONFIG and fills *err (file, key path, problem); *out
 * is left NULL. Relative file names inside the configuration (TLS files,
 * secrets, data_dir, key_file) are resolved against the directory of path,
 * made absolute. path and err are borrowed; err may be NULL. The client
 * secret is read here (file or environment); files named for later use
 * (TLS, CA, key_file) are not opened. Error messages never quote values.
 */
int sg_config_load(const char *path, struct sg_config **out, struct sg_config_error *err);

/* Same as sg_config_load, from a buffer of len bytes (at most 1 MiB; need
 * not be NUL-terminated); name is used in error records and as cfg->path,
 * base_dir resolves relative file names (NULL keeps them as written). All
 * pointers are borrowed. */
int sg_config_parse(const char *name, const char *base_dir, const char *json, size_t len,
                    struct sg_config **out, struct sg_config_error *err);

/* Takes another reference; returns cfg. */
struct sg_config *sg_config_ref(struct sg_config *cfg);

/* Drops a reference; frees at zero. NULL-safe. */
void sg_config_unref(struct sg_config *cfg);

/* Parses an http(s) URL into out (caller frees with sg_url_clear): host
 * required, no user information, query or fragment; trailing slashes are
 * dropped. Returns 0 or SG_EINVAL (out then zeroed). */
int sg_url_parse(const char *text, struct sg_url *out);
void sg_url_clear(struct sg_url *url);

/* The route for a request's match path (target.h): the longest prefix that
 * matches on a segment boundary ("/admin" matches "/admin", "/admin/x", not
 * "/administrator"), case folded when upstream.paths is case-insensitive; a
 * static {"/", SG_AUTH_OPTIONAL} when none does. Never NULL; the result is
 * borrowed from cfg (or static). */
const struct sg_route_config *sg_config_route(const struct sg_config *cfg, const char *path);

/* True when a request's match path is the configured site path (psa.login_path,
 * ...), or lies under it for sg_config_path_under; case folded when
 * upstream.paths is case-insensitive. */
bool sg_config_path_is(const struct sg_config *cfg, const char *match, const char *path);
bool sg_config_path_under(const struct sg_config *cfg, const char *match, const char *prefix);

#endif
