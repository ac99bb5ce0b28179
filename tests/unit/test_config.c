/*
 * Unit tests of the configuration parser (gateway/policy.c): a full file,
 * the defaults, regions, routes, secrets, the example files under policy/,
 * and many refused inputs, each checked for its code and key path. The
 * source is included to reach its static helpers and limits.
 */
#include "../../gateway/common.c"
#include "../../gateway/evmem.c"
#include "../../gateway/headers.c"
#include "../../gateway/cookie.c"
#include "../../gateway/cookies.c"
#include "../../gateway/clientaddr.c"
#include "../../gateway/policy.c"
#include "../../gateway/target.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/stat.h>

#ifndef SG_SOURCE_DIR
#error "SG_SOURCE_DIR must name the source tree (-DSG_SOURCE_DIR=...)"
#endif

#define ENV_SECRET  "s3cr3t-value-from-env"
#define FILE_SECRET "s3cr3t-value-from-file"

static char tmpdir[64];
static char tmpdir_real[PATH_MAX];

/* The smallest accepted file, and ways to extend or replace parts of it.
 * JSON is written with ' for " and turned back by json_text(). */
#define L_          "'listeners':[{'address':'127.0.0.1','port':8080}]"
#define P_          "'public_url':'https://psa.example.com'"
#define U_          "'upstream':{'url':'http://127.0.0.1:9000'}"
#define D_          "'data_dir':'data'"
#define MINIMAL     "{" L_ "," P_ "," U_ "," D_ "}"
#define WITH(extra) "{" L_ "," P_ "," U_ "," D_ "," extra "}"
#define NO_L(extra) "{" P_ "," U_ "," D_ "," extra "}"
#define NO_P(extra) "{" L_ "," U_ "," D_ "," extra "}"
#define NO_U(extra) "{" L_ "," P_ "," D_ "," extra "}"
#define NO_D(extra) "{" L_ "," P_ "," U_ "," extra "}"
#define IDP_BASE    "'issuer':'https://idp.example.com','client_id':'psa'"
#define IDP(extra)  "'idp':{" IDP_BASE ",'client_secret_env':'SG_TEST_SECRET'" extra "}"

static char *json_text(const char *s)
{
    char *out = sg_strdup(s);
    for (char *c = out; *c != '\0'; c++) {
        if (*c == '\'')
            *c = '"';
    }
    return out;
}

static int parse(const char *s, struct sg_config **cfg, struct sg_config_error *err)
{
    char *json = json_text(s);
    int rc = sg_config_parse("test.json", tmpdir, json, strlen(json), cfg, err);
    free(json);
    return rc;
}

static struct sg_config *parse_ok(const char *s)
{
    struct sg_config *cfg = NULL;
    struct sg_config_error err;
    int rc = parse(s, &cfg, &err);
    if (rc != 0)
        print_error("refused: %s: %s\n  input: %s\n", err.key, err.message, s);
    assert_int_equal(rc, 0);
    assert_non_null(cfg);
    return cfg;
}

static void expect_refused(const char *s, const char *key, const char *fragment)
{
    struct sg_config *cfg = NULL;
    struct sg_config_error err;
    int rc = parse(s, &cfg, &err);
    if (rc != SG_ECONFIG || strcmp(err.key, key) != 0 || strstr(err.message, fragment) == NULL)
        print_error("input: %s\n  got %d '%s': '%s'\n  want '%s' with '%s'\n", s, rc, err.key,
                    err.message, key, fragment);
    assert_int_equal(rc, SG_ECONFIG);
    assert_null(cfg);
    assert_string_equal(err.file, "test.json");
    assert_string_equal(err.key, key);
    assert_non_null(strstr(err.message, fragment));
    /* Neither the secrets nor the password of a refused URL are repeated. */
    assert_null(strstr(err.message, "s3cr3t"));
    assert_null(strstr(err.message, "hunter2"));
}

static void write_file(const char *name, const char *data, size_t len)
{
    char *path = sg_asprintf("%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(path);
}

static const char *const tmp_files[] = {
    "secret.txt", "crlf.txt", "two.txt", "empty.txt", "nul.txt", "big.txt", "cfg.json", "big.json",
};

static int setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sg-test-config-XXXXXX");
    if (mkdtemp(tmpdir) == NULL || realpath(tmpdir, tmpdir_real) == NULL)
        return -1;
    write_file("secret.txt", FILE_SECRET "\n", strlen(FILE_SECRET "\n"));
    write_file("crlf.txt", FILE_SECRET "\r\n", strlen(FILE_SECRET "\r\n"));
    write_file("two.txt", FILE_SECRET "\n\n", strlen(FILE_SECRET "\n\n"));
    write_file("empty.txt", "\n", 1);
    write_file("nul.txt", "s3cr3t\0tail", 11);
    char big[SG_SECRET_MAX_BYTES + 10];
    memset(big, 'a', sizeof(big));
    write_file("big.txt", big, sizeof(big));
    char *dir = sg_asprintf("%s/adir", tmpdir);
    int rc = mkdir(dir, 0700);
    free(dir);
    setenv("SG_TEST_SECRET", ENV_SECRET, 1);
    setenv("SG_TEST_EMPTY", "", 1);
    unsetenv("SG_TEST_UNSET");
    setenv("SSOGATE_CLIENT_SECRET", ENV_SECRET, 1);
    return rc;
}

static int teardown(void **state)
{
    for (size_t i = 0; i < SG_ARRAY_LEN(tmp_files); i++) {
        char *path = sg_asprintf("%s/%s", tmpdir, tmp_files[i]);
        unlink(path);
        free(path);
    }
    char *dir = sg_asprintf("%s/adir", tmpdir);
    rmdir(dir);
    free(dir);
    return rmdir(tmpdir);
}

/* The brief's example, every key set to a non-default value. */
static const char full_config[] =
    "{'listeners':[{'address':'127.0.0.1','port':8080,"
    "'tls':{'cert':'tls/cert.pem','key':'/srv/tls/key.pem'}},{'address':'::1','port':0}],"
    "'public_url':'https://psa.example.com/',"
    "'upstream':{'url':'http://127.0.0.1:9000','ca_file':'ca.pem','connect_timeout_ms':1500,"
    "'response_timeout_ms':25000,'pool_size':32},"
    "'psa':{'login_path':'/Account/Login','home_path':'/home','whoami':{'path':'/api/me',"
    "'tenant':'/data/tenant','user':'/data/user','admin':'/data/is_admin','kind':'/data/kind',"
    "'active':'/data/active','staff_kind':'employee'}},"
    "'idp':{'issuer':'https://idp.example.com/tenant/','client_id':'psa',"
    "'client_secret_env':'SG_TEST_SECRET','scopes':['openid','email'],'ca_file':'idp-ca.pem',"
    "'allow_insecure_http':false,'connect_timeout_ms':1000,'timeout_ms':5000,'clock_skew_s':30,"
    "'token_auth':'client_secret_post','algorithms':['ES256','EdDSA'],"
    "'claims':{'tenant':'tid','master':'is_master','module_urls':'modules','active':'enabled',"
    "'email':'mail'}},"
    "'required_amr':['otp'],"
    "'region':{'name':'uk'},"
    "'session':{'cookie_name':'sg','idle_timeout_s':600,'absolute_timeout_s':3600},"
    "'routes':[{'prefix':'/','auth':'optional'},{'prefix':'/admin','auth':'required'},"
    "{'prefix':'/static/','auth':'none'}],"
    "'identity':'claims',"
    "'data_dir':'state',"
    "'limits':{'header_bytes':8192,'body_bytes':4294967296,'connections':500,"
    "'logins_in_flight':100,'client_timeout_s':15},"
    "'assertion':{'key_file':'assertion-key.pem','ttl_s':120},"
    "'log':{'level':'debug','access':false},"
    "'workers':2,"
    "'drain_timeout_s':5}";

/* claim_headers: kept as written, and every name stripped from clients. */
static void test_claim_headers_config(void **state)
{
    struct sg_config *cfg = parse_ok(WITH("'claim_headers':{'X-Groups':'/groups','Remote-User':"
                                          "'/preferred_username','X-Dept':'/org/dept'}"));
    assert_int_equal(cfg->claim_header_count, 3);
    assert_string_equal(cfg->claim_headers[1].name, "Remote-User");
    assert_string_equal(cfg->claim_headers[1].pointer, "/preferred_username");
    assert_string_equal(cfg->claim_header_names[2], "X-Dept");
    assert_null(cfg->claim_header_names[3]);
    sg_config_unref(cfg);
}

/* A generic gateway whose IdP sends no amr: claims mode may ask for no second factor. */
static void test_claims_without_amr(void **state)
{
    struct sg_config *cfg = parse_ok(WITH("'required_amr':[],'identity':'claims'," IDP("")));
    assert_null(cfg->required_amr[0]);
    sg_config_unref(cfg);
}

static void test_full_config(void **state)
{
    char *json = json_text(full_config);
    struct sg_config *cfg = NULL;
    struct sg_config_error err;
    int rc = sg_config_parse("full.json", "/etc/ssogate", json, strlen(json), &cfg, &err);
    if (rc != 0)
        print_error("%s: %s\n", err.key, err.message);
    assert_int_equal(rc, 0);
    free(json);

    assert_int_equal(cfg->refcount, 1);
    assert_string_equal(cfg->path, "full.json");
    assert_int_equal(cfg->listener_count, 2);
    assert_string_equal(cfg->listeners[0].address, "127.0.0.1");
    assert_int_equal(cfg->listeners[0].port, 8080);
    assert_string_equal(cfg->listeners[0].tls_cert, "/etc/ssogate/tls/cert.pem");
    assert_string_equal(cfg->listeners[0].tls_key, "/srv/tls/key.pem");
    assert_string_equal(cfg->listeners[1].address, "::1");
    assert_int_equal(cfg->listeners[1].port, 0);
    assert_null(cfg->listeners[1].tls_cert);
    assert_null(cfg->listeners[1].tls_key);

    assert_string_equal(cfg->public_url.text, "https://psa.example.com");
    assert_true(cfg->public_url.https);
    assert_string_equal(cfg->public_url.host, "psa.example.com");
    assert_int_equal(cfg->public_url.port, 443);
    assert_string_equal(cfg->public_url.path, "");

    assert_string_equal(cfg->upstream.url.text, "http://127.0.0.1:9000");
    assert_false(cfg->upstream.url.https);
    assert_int_equal(cfg->upstream.url.port, 9000);
    assert_string_equal(cfg->upstream.ca_file, "/etc/ssogate/ca.pem");
    assert_int_equal(cfg->upstream.connect_timeout_ms, 1500);
    assert_int_equal(cfg->upstream.response_timeout_ms, 25000);
    assert_int_equal(cfg->upstream.pool_size, 32);

    assert_string_equal(cfg->psa.login_path, "/Account/Login");
    assert_string_equal(cfg->psa.home_path, "/home");
    assert_string_equal(cfg->psa.whoami.path, "/api/me");
    assert_string_equal(cfg->psa.whoami.tenant, "/data/tenant");
    assert_string_equal(cfg->psa.whoami.user, "/data/user");
    assert_string_equal(cfg->psa.whoami.admin, "/data/is_admin");
    assert_string_equal(cfg->psa.whoami.kind, "/data/kind");
    assert_string_equal(cfg->psa.whoami.active, "/data/active");
    assert_string_equal(cfg->psa.whoami.staff_kind, "employee");

    const struct sg_idp_config *idp = cfg->idp;
    assert_non_null(idp);
    assert_string_equal(idp->issuer.text, "https://idp.example.com/tenant");
    assert_string_equal(idp->issuer.path, "/tenant");
    assert_string_equal(idp->client_id, "psa");
    assert_string_equal(idp->client_secret, ENV_SECRET);
    assert_string_equal(idp->scopes[0], "openid");
    assert_string_equal(idp->scopes[1], "email");
    assert_null(idp->scopes[2]);
    assert_string_equal(idp->ca_file, "/etc/ssogate/idp-ca.pem");
    assert_false(idp->allow_insecure_http);
    assert_int_equal(idp->connect_timeout_ms, 1000);
    assert_int_equal(idp->timeout_ms, 5000);
    assert_int_equal(idp->clock_skew_s, 30);
    assert_int_equal(idp->token_auth, SG_TOKEN_AUTH_CLIENT_SECRET_POST);
    assert_string_equal(idp->algorithms[0], "ES256");
    assert_string_equal(idp->algorithms[1], "EdDSA");
    assert_null(idp->algorithms[2]);
    assert_string_equal(idp->claims.tenant, "tid");
    assert_string_equal(idp->claims.master, "is_master");
    assert_string_equal(idp->claims.module_urls, "modules");
    assert_string_equal(idp->claims.active, "enabled");
    assert_string_equal(idp->claims.email, "mail");

    assert_string_equal(cfg->required_amr[0], "otp");
    assert_null(cfg->required_amr[1]);
    assert_string_equal(cfg->region.name, "UK");
    assert_string_equal(cfg->region.module_url, "https://bmsemea.kaseya.com");
    assert_string_equal(cfg->session.cookie_name, "sg");
    assert_int_equal(cfg->session.idle_timeout_s, 600);
    assert_int_equal(cfg->session.absolute_timeout_s, 3600);
    assert_int_equal(cfg->route_count, 3);
    assert_string_equal(cfg->routes[1].prefix, "/admin");
    assert_int_equal(cfg->routes[1].auth, SG_AUTH_REQUIRED);
    assert_string_equal(cfg->routes[2].prefix, "/static");
    assert_int_equal(cfg->routes[2].auth, SG_AUTH_NONE);
    assert_int_equal(cfg->identity, SG_IDENTITY_CLAIMS);
    assert_string_equal(cfg->data_dir, "/etc/ssogate/state");
    assert_int_equal(cfg->limits.header_bytes, 8192);
    assert_true(cfg->limits.body_bytes == UINT64_C(4294967296));
    assert_int_equal(cfg->limits.connections, 500);
    assert_int_equal(cfg->limits.logins_in_flight, 100);
    assert_int_equal(cfg->limits.client_timeout_s, 15);
    assert_string_equal(cfg->assertion.key_file, "/etc/ssogate/assertion-key.pem");
    assert_int_equal(cfg->assertion.ttl_s, 120);
    assert_int_equal(cfg->log_level, SG_LOG_DEBUG);
    assert_false(cfg->access_log);
    assert_int_equal(cfg->workers, 2);
    assert_int_equal(cfg->drain_timeout_s, 5);
    sg_config_unref(cfg);
}

static void test_defaults(void **state)
{
    struct sg_config *cfg = parse_ok(MINIMAL);
    assert_int_equal(cfg->listener_count, 1);
    assert_null(cfg->listeners[0].tls_cert);
    assert_int_equal(cfg->upstream.connect_timeout_ms, 2000);
    assert_int_equal(cfg->upstream.response_timeout_ms, 30000);
    assert_int_equal(cfg->upstream.pool_size, 64);
    assert_null(cfg->upstream.ca_file);
    assert_string_equal(cfg->psa.login_path, "/login");
    assert_string_equal(cfg->psa.home_path, "/");
    assert_string_equal(cfg->psa.whoami.path, "/api/whoami");
    assert_string_equal(cfg->psa.whoami.tenant, "/tenant");
    assert_string_equal(cfg->psa.whoami.user, "/user");
    assert_string_equal(cfg->psa.whoami.admin, "/admin");
    assert_string_equal(cfg->psa.whoami.kind, "/kind");
    assert_string_equal(cfg->psa.whoami.active, "/active");
    assert_string_equal(cfg->psa.whoami.staff_kind, "staff");
    assert_null(cfg->idp);
    assert_string_equal(cfg->required_amr[0], "otp");
    assert_string_equal(cfg->required_amr[1], "mfa");
    assert_null(cfg->required_amr[2]);
    assert_string_equal(cfg->region.name, "US");
    assert_string_equal(cfg->region.module_url, "https://bms.kaseya.com");
    assert_string_equal(cfg->session.cookie_name, "ssogate");
    assert_int_equal(cfg->session.idle_timeout_s, 1800);
    assert_int_equal(cfg->session.absolute_timeout_s, 43200);
    assert_null(cfg->routes);
    assert_int_equal(cfg->route_count, 0);
    assert_int_equal(cfg->identity, SG_IDENTITY_LINK);
    char *data_dir = sg_asprintf("%s/data", tmpdir);
    assert_string_equal(cfg->data_dir, data_dir);
    free(data_dir);
    assert_int_equal(cfg->limits.header_bytes, 16384);
    assert_true(cfg->limits.body_bytes == 10 * 1024 * 1024);
    assert_int_equal(cfg->limits.connections, 10000);
    assert_int_equal(cfg->limits.logins_in_flight, 10000);
    assert_int_equal(cfg->limits.client_timeout_s, 30);
    assert_null(cfg->assertion.key_file);
    assert_int_equal(cfg->assertion.ttl_s, 60);
    assert_int_equal(cfg->log_level, SG_LOG_INFO);
    assert_true(cfg->access_log);
    assert_int_equal(cfg->workers, 1);
    assert_int_equal(cfg->drain_timeout_s, 10);
    assert_int_equal(cfg->trusted_proxy_count, 0);
    assert_true(cfg->limits.body_memory_bytes == UINT64_C(256) << 20);
    assert_int_equal(cfg->limits.tunnels, 5000);
    assert_int_equal(cfg->limits.connections_per_address, 0);
    assert_int_equal(cfg->metrics_from_count, 2);
    assert_int_equal(cfg->metrics_from[0].family, AF_INET);
    assert_int_equal(cfg->metrics_from[0].bits, 8);
    assert_int_equal(cfg->metrics_from[1].family, AF_INET6);
    sg_config_unref(cfg);

    cfg = parse_ok(WITH("'limits':{'body_bytes':1073741824}"));
    assert_true(cfg->limits.body_memory_bytes == UINT64_C(1) << 30);
    sg_config_unref(cfg);

    cfg = parse_ok(WITH("'trusted_proxies':['10.0.0.0/8','fd00::/8','192.0.2.7']"));
    assert_int_equal(cfg->trusted_proxy_count, 3);
    assert_int_equal(cfg->trusted_proxies[1].family, AF_INET6);
    assert_int_equal(cfg->trusted_proxies[1].bits, 8);
    assert_int_equal(cfg->trusted_proxies[2].bits, 32);
    sg_config_unref(cfg);

    cfg = parse_ok(WITH(IDP("")));
    const struct sg_idp_config *idp = cfg->idp;
    assert_non_null(idp);
    assert_string_equal(idp->scopes[0], "openid");
    assert_string_equal(idp->scopes[1], "email");
    assert_string_equal(idp->scopes[2], "profile");
    assert_null(idp->scopes[3]);
    assert_null(idp->ca_file);
    assert_false(idp->allow_insecure_http);
    assert_int_equal(idp->connect_timeout_ms, 2000);
    assert_int_equal(idp->timeout_ms, 10000);
    assert_int_equal(idp->clock_skew_s, 60);
    assert_int_equal(idp->token_auth, SG_TOKEN_AUTH_CLIENT_SECRET_BASIC);
    assert_string_equal(idp->algorithms[0], "RS256");
    assert_string_equal(idp->algorithms[1], "PS256");
    assert_string_equal(idp->algorithms[2], "ES256");
    assert_string_equal(idp->algorithms[3], "EdDSA");
    assert_null(idp->algorithms[4]);
    assert_string_equal(idp->claims.tenant, "tenant");
    assert_string_equal(idp->claims.master, "master");
    assert_string_equal(idp->claims.module_urls, "module_urls");
    assert_string_equal(idp->claims.active, "active");
    assert_string_equal(idp->claims.email, "email");
    sg_config_unref(cfg);

    /* An empty routes array is the same as none. */
    cfg = parse_ok(WITH("'routes':[]"));
    assert_int_equal(cfg->route_count, 0);
    sg_config_unref(cfg);
}

struct bad_case {
    const char *json;
    const char *key;
    const char *fragment;
};

static const struct bad_case bad_cases[] = {
    /* not JSON, or not the right JSON */
    {"", "", "invalid JSON"},
    {"   ", "", "invalid JSON"},
    {"{", "", "premature EOF"},
    {"{'listeners':[{'address':'127.0.0.1','port':80", "", "premature EOF"},
    {"{'a':1,}", "", "invalid JSON"},
    {"{'a' 1}", "", "invalid JSON"},
    {MINIMAL " {}", "", "invalid JSON"},
    {"{/* comment */}", "", "invalid JSON"},
    {"{'a':'\xff'}", "", "invalid JSON"},
    {"{'a':tru}", "", "invalid JSON"},
    /* the store */
    {WITH("'store':{'type':'redis'}"), "store.type", "must be one of"},
    {WITH("'store':{'type':'lmdb','conninfo':'host=a'}"), "store", "type lmdb takes no conninfo"},
    {WITH("'store':{'type':'postgresql'}"), "store", "needs exactly one of conninfo"},
    {WITH("'store':{'type':'postgresql','conninfo':'host=a','conninfo_env':'SG_TEST_SECRET'}"),
     "store", "needs exactly one of conninfo"},
    {WITH("'store':{'type':'postgresql','conninfo':'host=a port'}"), "store.conninfo",
     "is not a libpq connection string"},
    {WITH("'store':{'type':'postgresql','conninfo':'nosuchkey=1'}"), "store.conninfo",
     "is not a libpq connection string"},
    /* libpq's message quotes what it stopped at: a password, or the whole URI with it */
    {WITH("'store':{'type':'postgresql','conninfo':'host=10.0.0.5 password=a hunter2'}"),
     "store.conninfo", "is not a libpq connection string: missing \"...\" after \"...\""},
    {WITH("'store':{'type':'postgresql','conninfo':'host=10.0.0.5 password=a hunter2=b'}"),
     "store.conninfo", "is not a libpq connection string"},
    {WITH("'store':{'type':'postgresql','conninfo':'postgresql://app:hunter2@[::1/db'}"),
     "store.conninfo", "is not a libpq connection string"},
    {WITH("'store':{'type':'postgresql','conninfo':'host=pg.example.com dbname=x'}"),
     "store.conninfo", "names a server by host name"},
    {WITH("'store':{'type':'postgresql','conninfo':'host=10.0.0.5,pg2 dbname=x'}"),
     "store.conninfo", "names a server by host name"},
    {WITH("'store':{'type':'postgresql','conninfo':'postgresql://db.example.com/x'}"),
     "store.conninfo", "names a server by host name"},
    {WITH("'store':{'type':'postgresql','conninfo_env':'SG_NO_SUCH_VARIABLE'}"),
     "store.conninfo_env", "is not set"},
    {WITH("'store':{'type':'postgresql','conninfo':'host=a','pool_size':0}"), "store.pool_size",
     "must be"},
    {WITH("'store':{'type':'postgresql','conninfo':'host=a','cache_ttl_s':0}"), "store.cache_ttl_s",
     "must be"},
    {WITH("'limits':{'body_bytes':20000000,'body_memory_bytes':10000000}"),
     "limits.body_memory_bytes", "must be at least limits.body_bytes"},
    {WITH("'limits':{'body_memory_bytes':1000}"), "limits.body_memory_bytes", "must be"},
    {WITH("'limits':{'connections':10,'tunnels':11}"), "limits.tunnels",
     "must not be more than limits.connections"},
    {WITH("'metrics_from':['10.0.0.0/8','prometheus']"), "metrics_from[1]", "numeric IPv4"},
    {WITH("'trusted_proxies':'10.0.0.0/8'"), "trusted_proxies", "must be an array"},
    {WITH("'trusted_proxies':['10.0.0.1/8']"), "trusted_proxies[0]", "past its prefix"},
    {WITH("'trusted_proxies':['::1','lb.example.com']"), "trusted_proxies[1]",
     "numeric IPv4 or IPv6"},
    {WITH("'trusted_proxies':['10.0.0.0/33']"), "trusted_proxies[0]", "longer than the address"},
    {WITH("'trusted_proxies':['10.0.0.0/8','10.0.0.0/8']"), "trusted_proxies[1]",
     "the same block as [0]"},
    {WITH("'trusted_proxies':['']"), "trusted_proxies[0]", "must not be empty"},
    {WITH("'trusted_proxies':[8]"), "trusted_proxies[0]", "must be a string"},
    {"[]", "", "top level must be a JSON object"},
    {"'text'", "", "top level must be a JSON object"},
    {"42", "", "top level must be a JSON object"},
    {"null", "", "top level must be a JSON object"},
    /* required keys */
    {"{}", "listeners", "is required"},
    {NO_L("'workers':1"), "listeners", "is required"},
    {NO_P("'workers':1"), "public_url", "is required"},
    {NO_U("'workers':1"), "upstream", "is required"},
    {NO_D("'workers':1"), "data_dir", "is required"},
    {NO_U("'upstream':{'pool_size':1}"), "upstream.url", "is required"},
    {NO_L("'listeners':[]"), "listeners", "must have 1 to 64"},
    {NO_L("'listeners':[{'address':'127.0.0.1'}]"), "listeners[0].port", "is required"},
    {NO_L("'listeners':[{'port':1}]"), "listeners[0].address", "is required"},
    {WITH("'region':{'module_url':'https://x.example.com'}"), "region.name", "is required"},
    {WITH("'routes':[{'prefix':'/a'}]"), "routes[0].auth", "is required"},
    {WITH("'routes':[{'auth':'none'}]"), "routes[0].prefix", "is required"},
    /* unknown and duplicate keys, at every level */
    {WITH("'listen':1"), "listen", "unknown key"},
    {WITH("'Workers':1"), "Workers", "unknown key"},
    {WITH("'work\\u0000ers':1"), "work?ers", "unknown key"},
    {WITH("'session':{'cookie':'x'}"), "session.cookie", "unknown key"},
    {NO_L("'listeners':[{'address':'127.0.0.1','port':1,'ssl':true}]"), "listeners[0].ssl",
     "unknown key"},
    {NO_L("'listeners':[{'address':'127.0.0.1','port':1,'tls':{'cert':'c','key':'k','ca':'x'}}]"),
     "listeners[0].tls.ca", "unknown key"},
    {WITH(IDP(",'claims':{'tenants':'t'}")), "idp.claims.tenants", "unknown key"},
    {WITH("'psa':{'whoami':{'email':'/e'}}"), "psa.whoami.email", "unknown key"},
    {WITH("'log':{'format':'json'}"), "log.format", "unknown key"},
    {WITH("'workers':1,'workers':2"), "workers", "duplicate key"},
    {WITH("'session':{'idle_timeout_s':60,'idle_timeout_s':60}"), "session.idle_timeout_s",
     "duplicate key"},
    {WITH(IDP(",'client_id':'other'")), "idp.client_id", "duplicate key"},
    {"{" L_ "," L_ "}", "listeners", "duplicate key"},
    /* wrong types */
    {WITH("'workers':'1'"), "workers", "must be an integer, not a string"},
    {WITH("'workers':true"), "workers", "must be an integer, not a boolean"},
    {WITH("'workers':null"), "workers", "must be an integer, not null"},
    {WITH("'workers':[1]"), "workers", "must be an integer, not an array"},
    {WITH("'log':{'access':'yes'}"), "log.access", "true or false"},
    {WITH("'log':{'access':1}"), "log.access", "true or false"},
    {NO_L("'listeners':{}"), "listeners", "must be an array"},
    {NO_L("'listeners':[5]"), "listeners[0]", "must be an object"},
    {NO_L("'listeners':[{'address':'127.0.0.1','port':1,'tls':'yes'}]"), "listeners[0].tls",
     "must be an object"},
    {NO_L("'listeners':[{'address':1,'port':1}]"), "listeners[0].address", "must be a string"},
    {WITH("'session':[]"), "session", "must be an object, not an array"},
    {NO_P("'public_url':5"), "public_url", "must be a string"},
    {WITH("'idp':'https://idp.example.com'"), "idp", "must be an object"},
    {WITH("'idp':null"), "idp", "must be an object, not null"},
    {WITH("'routes':{}"), "routes", "must be an array"},
    {WITH("'routes':['/a']"), "routes[0]", "must be an object"},
    {WITH("'required_amr':'otp'"), "required_amr", "must be an array"},
    {WITH("'required_amr':['otp',2]"), "required_amr[1]", "must be a string"},
    {WITH("'region':'US'"), "region", "must be an object"},
    /* numbers */
    {NO_L("'listeners':[{'address':'127.0.0.1','port':65536}]"), "listeners[0].port",
     "between 0 and 65535"},
    {NO_L("'listeners':[{'address':'127.0.0.1','port':-1}]"), "listeners[0].port",
     "must not be negative"},
    {NO_L("'listeners':[{'address':'127.0.0.1','port':80.5}]"), "listeners[0].port",
     "whole number"},
    {NO_L("'listeners':[{'address':'127.0.0.1','port':8e1}]"), "listeners[0].port", "whole number"},
    {NO_L("'listeners':[{'address':'127.0.0.1','port':80.0}]"), "listeners[0].port",
     "whole number"},
    {WITH("'workers':0"), "workers", "between 1 and 64"},
    {WITH("'workers':65"), "workers", "between 1 and 64"},
    {WITH("'workers':-0"), "workers", "must not be negative"},
    {WITH("'workers':9223372036854775807"), "workers", "between 1 and 64"},
    {WITH("'workers':9223372036854775808"), "workers", "between 1 and 64"},
    {WITH("'workers':18446744073709551616"), "workers", "between 1 and 64"},
    {WITH("'workers':1000000000000000000000000000000000000000000"), "workers", "between"},
    {WITH("'drain_timeout_s':0"), "drain_timeout_s", "between 1 and 3600"},
    {NO_U("'upstream':{'url':'http://h','pool_size':0}"), "upstream.pool_size",
     "between 1 and 4096"},
    {NO_U("'upstream':{'url':'http://h','pool_size':4097}"), "upstream.pool_size",
     "between 1 and 4096"},
    {NO_U("'upstream':{'url':'http://h','connect_timeout_ms':0}"), "upstream.connect_timeout_ms",
     "between 1 and 86400000"},
    {NO_U("'upstream':{'url':'http://h','response_timeout_ms':86400001}"),
     "upstream.response_timeout_ms", "between 1 and 86400000"},
    {WITH("'limits':{'header_bytes':1023}"), "limits.header_bytes", "between 1024 and 1048576"},
    {WITH("'limits':{'header_bytes':1048577}"), "limits.header_bytes", "between 1024"},
    {WITH("'limits':{'body_bytes':4294967297}"), "limits.body_bytes", "between 0 and 4294967296"},
    {WITH("'limits':{'connections':0}"), "limits.connections", "between 1"},
    {WITH("'limits':{'logins_in_flight':1000001}"), "limits.logins_in_flight", "between 1"},
    {WITH("'limits':{'client_timeout_s':86401}"), "limits.client_timeout_s", "between 1 and 86400"},
    {WITH("'assertion':{'ttl_s':301}"), "assertion.ttl_s", "between 1 and 300"},
    {WITH("'assertion':{'ttl_s':0}"), "assertion.ttl_s", "between 1 and 300"},
    {WITH("'session':{'idle_timeout_s':0}"), "session.idle_timeout_s", "between 1"},
    {WITH("'session':{'absolute_timeout_s':2592001}"), "session.absolute_timeout_s", "between 1"},
    {WITH("'session':{'idle_timeout_s':3600,'absolute_timeout_s':600}"),
     "session.absolute_timeout_s", "less than idle_timeout_s"},
    {WITH("'session':{'absolute_timeout_s':1799}"), "session.absolute_timeout_s",
     "less than idle_timeout_s"},
    {WITH(IDP(",'clock_skew_s':3601")), "idp.clock_skew_s", "between 0 and 3600"},
    {WITH(IDP(",'timeout_ms':0")), "idp.timeout_ms", "between 1"},
    {WITH(IDP(",'connect_timeout_ms':-5")), "idp.connect_timeout_ms", "must not be negative"},
    /* URLs */
    {NO_P("'public_url':'ftp://psa.example.com'"), "public_url", "http:// or https://"},
    {NO_P("'public_url':'psa.example.com'"), "public_url", "http:// or https://"},
    {NO_P("'public_url':'https://'"), "public_url", "must have a host"},
    {NO_P("'public_url':'https://:443'"), "public_url", "must have a host"},
    {NO_P("'public_url':'https://admin:hunter2@psa.example.com'"), "public_url",
     "user information"},
    {NO_P("'public_url':'https://psa.example.com/?a=b'"), "public_url", "query or a fragment"},
    {NO_P("'public_url':'https://psa.example.com#top'"), "public_url", "query or a fragment"},
    {NO_P("'public_url':'https://psa.example.com:0'"), "public_url", "port"},
    {NO_P("'public_url':'https://psa.example.com:65536'"), "public_url", "port"},
    {NO_P("'public_url':'https://psa.example.com:'"), "public_url", "invalid port"},
    {NO_P("'public_url':'https://psa.example.com:44x'"), "public_url", "invalid port"},
    {NO_P("'public_url':'https://[::1'"), "public_url", "unterminated"},
    {NO_P("'public_url':'https://[zz]'"), "public_url", "invalid IPv6"},
    {NO_P("'public_url':'https://[::1]x'"), "public_url", "after the host"},
    {NO_P("'public_url':'https://psa example.com'"), "public_url", "spaces"},
    {NO_P("'public_url':'https://psa\\\\example.com'"), "public_url", "backslashes"},
    {NO_P("'public_url':'https://psa.exa!mple.com'"), "public_url", "invalid host name"},
    {NO_P("'public_url':'https://psa.example.com/app'"), "public_url", "must not have a path"},
    {NO_P("'public_url':''"), "public_url", "must not be empty"},
    {NO_U("'upstream':{'url':'http://127.0.0.1:9000/?x'}"), "upstream.url", "query"},
    {NO_U("'upstream':{'url':'unix:/run/psa.sock'}"), "upstream.url", "http:// or https://"},
    {WITH("'region':{'name':'US','module_url':'bms.kaseya.com'}"), "region.module_url",
     "http:// or https://"},
    /* the IdP */
    {WITH("'idp':{'issuer':'http://idp.example.com','client_id':'psa',"
          "'client_secret_env':'SG_TEST_SECRET'}"),
     "idp.issuer", "must use https"},
    {WITH("'idp':{'issuer':'http://idp.example.com','client_id':'psa',"
          "'client_secret_env':'SG_TEST_SECRET','allow_insecure_http':false}"),
     "idp.issuer", "must use https"},
    {WITH("'idp':{'client_id':'psa','client_secret_env':'SG_TEST_SECRET'}"), "idp.issuer",
     "is required"},
    {WITH("'idp':{'issuer':'https://idp.example.com','client_secret_env':'SG_TEST_SECRET'}"),
     "idp.client_id", "is required"},
    {WITH("'idp':{" IDP_BASE "}"), "idp", "needs client_secret_file or client_secret_env"},
    {WITH("'idp':{" IDP_BASE ",'client_secret_env':'SG_TEST_SECRET',"
          "'client_secret_file':'secret.txt'}"),
     "idp", "only one of"},
    {WITH("'idp':{" IDP_BASE ",'client_secret_env':'SG_TEST_UNSET'}"), "idp.client_secret_env",
     "SG_TEST_UNSET is not set"},
    {WITH("'idp':{" IDP_BASE ",'client_secret_env':'SG_TEST_EMPTY'}"), "idp.client_secret_env",
     "SG_TEST_EMPTY is empty"},
    {WITH("'idp':{" IDP_BASE ",'client_secret_env':'1BAD'}"), "idp.client_secret_env",
     "environment variable name"},
    {WITH("'idp':{" IDP_BASE ",'client_secret_env':'A=B'}"), "idp.client_secret_env",
     "environment variable name"},
    {WITH("'idp':{" IDP_BASE ",'client_secret_env':''}"), "idp.client_secret_env",
     "must not be empty"},
    {WITH("'idp':{" IDP_BASE ",'client_secret_file':'missing.txt'}"), "idp.client_secret_file",
     "cannot read"},
    {WITH("'idp':{" IDP_BASE ",'client_secret_file':'empty.txt'}"), "idp.client_secret_file",
     "is empty"},
    {WITH("'idp':{" IDP_BASE ",'client_secret_file':'nul.txt'}"), "idp.client_secret_file",
     "NUL byte"},
    {WITH("'idp':{" IDP_BASE ",'client_secret_file':'adir'}"), "idp.client_secret_file",
     "not a regular file"},
    {WITH("'idp':{" IDP_BASE ",'client_secret_file':'big.txt'}"), "idp.client_secret_file",
     "larger than 4096 bytes"},
    {WITH("'idp':{" IDP_BASE ",'client_secret_file':5}"), "idp.client_secret_file",
     "must be a string"},
    {WITH(IDP(",'client_id':''")), "idp.client_id", "duplicate key"},
    {WITH("'idp':{'issuer':'https://idp.example.com','client_id':'',"
          "'client_secret_env':'SG_TEST_SECRET'}"),
     "idp.client_id", "must not be empty"},
    {WITH(IDP(",'scopes':['email','profile']")), "idp.scopes", "must include openid"},
    {WITH(IDP(",'scopes':[]")), "idp.scopes", "must have 1 to 32 items"},
    {WITH(IDP(",'scopes':['open id']")), "idp.scopes[0]", "spaces"},
    {WITH(IDP(",'scopes':['openid',1]")), "idp.scopes[1]", "must be a string"},
    {WITH(IDP(",'scopes':['openid','']")), "idp.scopes[1]", "must not be empty"},
    {WITH(IDP(",'algorithms':['none']")), "idp.algorithms[0]", "must be one of RS256"},
    {WITH(IDP(",'algorithms':['RS256','HS256']")), "idp.algorithms[1]", "must be one of RS256"},
    {WITH(IDP(",'algorithms':['rs256']")), "idp.algorithms[0]", "must be one of RS256"},
    {WITH(IDP(",'algorithms':[]")), "idp.algorithms", "must have 1 to 4 items"},
    {WITH(IDP(",'algorithms':'RS256'")), "idp.algorithms", "must be an array"},
    {WITH(IDP(",'allow_insecure_http':'true'")), "idp.allow_insecure_http", "true or false"},
    {WITH(IDP(",'claims':{'tenant':''}")), "idp.claims.tenant", "must not be empty"},
    {WITH(IDP(",'claims':{'email':null}")), "idp.claims.email", "must be a string"},
    {WITH(IDP(",'issuer':'https://x'")), "idp.issuer", "duplicate key"},
    /* every enum */
    {WITH("'claim_headers':['/a']"), "claim_headers", "must be an object"},
    {WITH("'claim_headers':{'X Name':'/a'}"), "claim_headers.X Name", "token"},
    {WITH("'claim_headers':{'X-SSO-Groups':'/a'}"), "claim_headers.X-SSO-Groups", "owns"},
    {WITH("'claim_headers':{'x_sso_groups':'/a'}"), "claim_headers.x_sso_groups", "owns"},
    {WITH("'claim_headers':{'X_Forwarded_For':'/a'}"), "claim_headers.X_Forwarded_For", "owns"},
    {WITH("'claim_headers':{'Cookie':'/a'}"), "claim_headers.Cookie", "owns"},
    {WITH("'claim_headers':{'Transfer-Encoding':'/a'}"), "claim_headers.Transfer-Encoding", "owns"},
    {WITH("'claim_headers':{'content-length':'/a'}"), "claim_headers.content-length", "owns"},
    {WITH("'claim_headers':{'Content-Type':'/a'}"), "claim_headers.Content-Type",
     "frames the body"},
    {WITH("'claim_headers':{'X-A':'a'}"), "claim_headers.X-A", "JSON pointer"},
    {WITH("'claim_headers':{'X-A':1}"), "claim_headers.X-A", "JSON pointer string"},
    {WITH("'claim_headers':{'X-A':'/a','x_a':'/b'}"), "claim_headers.x_a", "same header as X-A"},
    {WITH(IDP(",'token_auth':'private_key_jwt'")), "idp.client_key_file",
     "is required with token_auth private_key_jwt"},
    {WITH(IDP(",'token_auth':'client_secret_jwt'")), "idp.token_auth",
     "must be one of: client_secret_basic, client_secret_post, private_key_jwt"},
    {WITH(IDP(",'client_key_file':'k.pem'")), "idp.client_key_file",
     "is used only with token_auth private_key_jwt"},
    {WITH("'idp':{" IDP_BASE ",'client_secret_env':'SG_TEST_SECRET','token_auth':'private_key_jwt',"
          "'client_key_file':'k.pem'}"),
     "idp", "uses client_key_file, not a client secret"},
    {WITH(IDP(",'token_auth':'Client_Secret_Basic'")), "idp.token_auth", "must be one of"},
    {WITH("'routes':[{'prefix':'/','auth':'maybe'}]"), "routes[0].auth",
     "must be one of: none, optional, required"},
    {WITH("'routes':[{'prefix':'/','auth':''}]"), "routes[0].auth", "must not be empty"},
    {WITH("'identity':'both'"), "identity", "must be one of: link, claims"},
    {WITH("'identity':0"), "identity", "must be a string"},
    {WITH("'log':{'level':'verbose'}"), "log.level", "must be one of: debug, info, warn, error"},
    {WITH("'log':{'level':'INFO'}"), "log.level", "must be one of"},
    /* routes */
    {WITH("'routes':[{'prefix':'admin','auth':'none'}]"), "routes[0].prefix", "must start with /"},
    {WITH("'routes':[{'prefix':'/_sso/login','auth':'none'}]"), "routes[0].prefix", "/_sso/"},
    {WITH("'routes':[{'prefix':'/_sso','auth':'none'}]"), "routes[0].prefix", "/_sso/"},
    {WITH("'routes':[{'prefix':'/_sso/','auth':'none'}]"), "routes[0].prefix", "/_sso/"},
    {WITH("'routes':[{'prefix':'/a/../b','auth':'none'}]"), "routes[0].prefix", ". or .."},
    {WITH("'routes':[{'prefix':'/a/.','auth':'none'}]"), "routes[0].prefix", ". or .."},
    {WITH("'routes':[{'prefix':'/a?b','auth':'none'}]"), "routes[0].prefix", "plain path"},
    {WITH("'routes':[{'prefix':'//a','auth':'none'}]"), "routes[0].prefix", "//"},
    {WITH("'routes':[{'prefix':'/a','auth':'none'},{'prefix':'/a/','auth':'optional'}]"),
     "routes[1].prefix", "same prefix as routes[0]"},
    {WITH("'routes':[{'prefix':'/a','auth':'none','auth':'none'}]"), "routes[0].auth",
     "duplicate key"},
    {WITH("'routes':[{'prefix':'/','auth':'optional'},{'prefix':'/x','auth':'required'}]"),
     "routes[1].auth", "needs an idp"},
    {WITH("'identity':'claims'"), "identity", "needs an idp"},
    /* listeners */
    {NO_L("'listeners':[{'address':'localhost','port':1}]"), "listeners[0].address", "numeric"},
    {NO_L("'listeners':[{'address':'[::1]','port':1}]"), "listeners[0].address", "numeric"},
    {NO_L("'listeners':[{'address':'','port':1}]"), "listeners[0].address", "must not be empty"},
    {NO_L("'listeners':[{'address':'127.0.0.1','port':1,'tls':{'cert':'c.pem'}}]"),
     "listeners[0].tls.key", "is required"},
    {NO_L("'listeners':[{'address':'127.0.0.1','port':1,'tls':{'key':'k.pem'}}]"),
     "listeners[0].tls.cert", "is required"},
    {NO_L("'listeners':[{'address':'127.0.0.1','port':1,'tls':{'cert':'','key':'k'}}]"),
     "listeners[0].tls.cert", "must not be empty"},
    {NO_L("'listeners':[{'address':'127.0.0.1','port':1},{'address':'127.0.0.1','port':1}]"),
     "listeners[1]", "same address and port as listeners[0]"},
    /* strings */
    {NO_D("'data_dir':''"), "data_dir", "must not be empty"},
    {NO_D("'data_dir':'a\\u0000b'"), "data_dir", "control characters"},
    {WITH("'psa':{'whoami':{'staff_kind':'a\\nb'}}"), "psa.whoami.staff_kind",
     "control characters"},
    {WITH("'psa':{'login_path':'login'}"), "psa.login_path", "must start with /"},
    {WITH("'psa':{'home_path':'//evil.example.com'}"), "psa.home_path", "//"},
    {WITH("'psa':{'whoami':{'path':'/api/who ami'}}"), "psa.whoami.path", "plain path"},
    {WITH("'psa':{'whoami':{'tenant':'tenant'}}"), "psa.whoami.tenant", "JSON pointer"},
    {WITH("'psa':{'whoami':{'user':'/a~2b'}}"), "psa.whoami.user", "~"},
    {WITH("'psa':{'whoami':{'admin':''}}"), "psa.whoami.admin", "must not be empty"},
    {WITH("'session':{'cookie_name':'a b'}"), "session.cookie_name", "cookie name token"},
    {WITH("'session':{'cookie_name':'a;b'}"), "session.cookie_name", "cookie name token"},
    {WITH("'session':{'cookie_name':'__Host-sg'}"), "session.cookie_name",
     "must not start with __Host-"},
    {WITH("'session':{'cookie_name':'__secure-sg'}"), "session.cookie_name",
     "must not start with __Host-"},
    {WITH("'required_amr':[]"), "required_amr", "may be empty only with identity"},
    {WITH("'required_amr':[],'identity':'link'," IDP("")), "required_amr",
     "may be empty only with identity"},
    {WITH("'required_amr':['1','2','3','4','5','6','7','8','9','10','11','12','13','14','15','16',"
          "'17']"),
     "required_amr", "must have 0 to 16 items"},
    {WITH("'required_amr':['o t p']"), "required_amr[0]", "spaces"},
    {WITH("'region':{'name':'EU'}"), "region.module_url", "is required when region.name"},
    {WITH("'region':{'name':''}"), "region.name", "must not be empty"},
    {WITH("'region':{'name':'U S'}"), "region.name", "spaces"},
    {WITH("'assertion':{'key_file':''}"), "assertion.key_file", "must not be empty"},
};

static void test_bad_inputs(void **state)
{
    for (size_t i = 0; i < SG_ARRAY_LEN(bad_cases); i++)
        expect_refused(bad_cases[i].json, bad_cases[i].key, bad_cases[i].fragment);
}

/* Inputs built to exhaust the parser: nesting, value count, sizes. */
static void test_hostile_sizes(void **state)
{
    size_t n = 200000;
    char *deep = sg_malloc(n + 16);
    memcpy(deep, "{'a':", 5);
    memset(deep + 5, '[', n);
    deep[n + 5] = '\0';
    expect_refused(deep, "", "nesting is too deep");
    free(deep);

    size_t count = SG_CONFIG_MAX_VALUES + 10;
    char *many = sg_malloc(2 * count + 32);
    size_t len = (size_t)sprintf(many, "{'listeners':[");
    for (size_t i = 0; i < count; i++)
        len += (size_t)sprintf(many + len, "%s0", i ? "," : "");
    strcpy(many + len, "]}");
    expect_refused(many, "", "too many JSON values");
    free(many);

    static const char head[] = "{" L_ "," P_ "," U_ ",'data_dir':'";
    char *long_value = sg_malloc(sizeof(head) + SG_STRING_MAX_BYTES + 8);
    memcpy(long_value, head, sizeof(head) - 1);
    memset(long_value + sizeof(head) - 1, 'a', SG_STRING_MAX_BYTES + 1);
    strcpy(long_value + sizeof(head) + SG_STRING_MAX_BYTES, "'}");
    expect_refused(long_value, "data_dir", "at most 4096 bytes");
    free(long_value);

    char *huge = sg_malloc(SG_CONFIG_MAX_BYTES + 2);
    memset(huge, ' ', SG_CONFIG_MAX_BYTES + 1);
    huge[0] = '{';
    huge[SG_CONFIG_MAX_BYTES] = '}';
    huge[SG_CONFIG_MAX_BYTES + 1] = '\0';
    expect_refused(huge, "", "larger than 1048576 bytes");
    free(huge);

    /* A NULL error record and a NULL buffer are tolerated. */
    struct sg_config *cfg = NULL;
    assert_int_equal(sg_config_parse("x", NULL, "{", 1, &cfg, NULL), SG_ECONFIG);
    assert_int_equal(sg_config_parse(NULL, NULL, NULL, 0, &cfg, NULL), SG_ECONFIG);
    assert_null(cfg);
}

/* Every prefix of a good file and every single-byte corruption of it must
 * parse or be refused cleanly (the sanitizer build checks for leaks). */
static void test_mutations(void **state)
{
    char *json = json_text(full_config);
    size_t len = strlen(json);
    char *copy = sg_malloc(len + 1);
    static const char replacements[] = {'\0', '"', '{', '}', '[', ']', ',', ':', '-', '9', 'x'};
    for (size_t cut = 0; cut < len; cut++) {
        struct sg_config *cfg = NULL;
        struct sg_config_error err;
        assert_int_equal(sg_config_parse("m", "/", json, cut, &cfg, &err), SG_ECONFIG);
        assert_null(cfg);
    }
    for (size_t at = 0; at < len; at++) {
        for (size_t r = 0; r < sizeof(replacements); r++) {
            memcpy(copy, json, len + 1);
            copy[at] = replacements[r];
            struct sg_config *cfg = NULL;
            struct sg_config_error err;
            int rc = sg_config_parse("m", "/", copy, len, &cfg, &err);
            assert_true(rc == 0 || rc == SG_ECONFIG);
            assert_true((rc == 0) == (cfg != NULL));
            assert_null(strstr(err.message, "s3cr3t"));
            sg_config_unref(cfg);
        }
    }
    free(copy);
    free(json);
}

static void test_regions(void **state)
{
    static const struct {
        const char *json;
        const char *name;
        const char *module_url;
    } cases[] = {
        {WITH("'region':{'name':'US'}"), "US", "https://bms.kaseya.com"},
        {WITH("'region':{'name':'uk'}"), "UK", "https://bmsemea.kaseya.com"},
        {WITH("'region':{'name':'Apac'}"), "APAC", "https://bmsapac.kaseya.com"},
        {WITH("'region':{'name':'EU','module_url':'https://bmseu.example.com/'}"), "EU",
         "https://bmseu.example.com"},
        {WITH("'region':{'name':'UK','module_url':'https://bms-uk.example.com'}"), "UK",
         "https://bms-uk.example.com"},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        struct sg_config *cfg = parse_ok(cases[i].json);
        assert_string_equal(cfg->region.name, cases[i].name);
        assert_string_equal(cfg->region.module_url, cases[i].module_url);
        sg_config_unref(cfg);
    }
}

static void test_routes(void **state)
{
    struct sg_config *cfg = parse_ok(MINIMAL);
    const struct sg_route_config *route = sg_config_route(cfg, "/anything");
    assert_string_equal(route->prefix, "/");
    assert_int_equal(route->auth, SG_AUTH_OPTIONAL);
    assert_ptr_equal(sg_config_route(NULL, "/x"), route);
    assert_ptr_equal(sg_config_route(cfg, NULL), route);
    sg_config_unref(cfg);

    cfg = parse_ok(WITH(IDP("") ",'routes':[{'prefix':'/','auth':'none'},"
                                "{'prefix':'/admin','auth':'required'},"
                                "{'prefix':'/admin/public','auth':'optional'},"
                                "{'prefix':'/api/','auth':'none'}]"));
    static const struct {
        const char *path;
        const char *prefix;
        enum sg_auth_mode auth;
    } cases[] = {
        {"/", "/", SG_AUTH_NONE},
        {"/x", "/", SG_AUTH_NONE},
        {"/admin", "/admin", SG_AUTH_REQUIRED},
        {"/admin/", "/admin", SG_AUTH_REQUIRED},
        {"/admin/x/y", "/admin", SG_AUTH_REQUIRED},
        {"/ADMIN", "/", SG_AUTH_NONE},
        {"/administrator", "/", SG_AUTH_NONE},
        {"/admin/public", "/admin/public", SG_AUTH_OPTIONAL},
        {"/admin/public/x", "/admin/public", SG_AUTH_OPTIONAL},
        {"/admin/publicity", "/admin", SG_AUTH_REQUIRED},
        {"/api", "/api", SG_AUTH_NONE},
        {"/api/v1", "/api", SG_AUTH_NONE},
        {"/apis", "/", SG_AUTH_NONE},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        route = sg_config_route(cfg, cases[i].path);
        if (strcmp(route->prefix, cases[i].prefix) != 0)
            print_error("path %s\n", cases[i].path);
        assert_string_equal(route->prefix, cases[i].prefix);
        assert_int_equal(route->auth, cases[i].auth);
    }
    sg_config_unref(cfg);

    /* Without a configured "/", unmatched paths get the built-in default. */
    cfg = parse_ok(WITH(IDP("") ",'routes':[{'prefix':'/admin','auth':'required'}]"));
    route = sg_config_route(cfg, "/home");
    assert_string_equal(route->prefix, "/");
    assert_int_equal(route->auth, SG_AUTH_OPTIONAL);
    assert_int_equal(sg_config_route(cfg, "/admin/x")->auth, SG_AUTH_REQUIRED);
    sg_config_unref(cfg);

    /* A PSA on IIS: matching folds case. */
    cfg =
        parse_ok(NO_U(IDP("") ",'upstream':{'url':'http://127.0.0.1:9','paths':'case-insensitive'},"
                              "'routes':[{'prefix':'/Admin','auth':'required'}]"));
    assert_int_equal(sg_config_route(cfg, "/admin/x")->auth, SG_AUTH_REQUIRED);
    assert_int_equal(sg_config_route(cfg, "/ADMIN")->auth, SG_AUTH_REQUIRED);
    assert_int_equal(sg_config_route(cfg, "/administrator")->auth, SG_AUTH_OPTIONAL);
    assert_true(sg_config_path_is(cfg, "/login", "/LOGIN"));
    sg_config_unref(cfg);

    /* A prefix is written in the normalised form requests are matched in. */
    static const char *const unnormalised[] = {"/admin/../x", "/a//b",    "/./a",
                                               "/%61dmin",    "/admin;x", "/a%2fb"};
    for (size_t i = 0; i < SG_ARRAY_LEN(unnormalised); i++) {
        char *json =
            sg_asprintf(WITH(IDP("") ",'routes':[{'prefix':'%s','auth':'none'}]"), unnormalised[i]);
        expect_refused(json, "routes[0].prefix", "");
        free(json);
    }
}

static void test_url_parse(void **state)
{
    static const struct {
        const char *in;
        const char *text;
        bool https;
        const char *host;
        uint16_t port;
        const char *path;
    } good[] = {
        {"http://host", "http://host", false, "host", 80, ""},
        {"https://host/", "https://host", true, "host", 443, ""},
        {"https://host//", "https://host", true, "host", 443, ""},
        {"HTTPS://Host.Example.com", "HTTPS://Host.Example.com", true, "Host.Example.com", 443, ""},
        {"https://[::1]:8443", "https://[::1]:8443", true, "::1", 8443, ""},
        {"http://[2001:db8::1]/x/", "http://[2001:db8::1]/x", false, "2001:db8::1", 80, "/x"},
        {"http://127.0.0.1:9000/psa/", "http://127.0.0.1:9000/psa", false, "127.0.0.1", 9000,
         "/psa"},
        {"https://idp.example.com:65535/a/b", "https://idp.example.com:65535/a/b", true,
         "idp.example.com", 65535, "/a/b"},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(good); i++) {
        struct sg_url url;
        assert_int_equal(sg_url_parse(good[i].in, &url), 0);
        assert_string_equal(url.text, good[i].text);
        assert_int_equal(url.https, good[i].https);
        assert_string_equal(url.host, good[i].host);
        assert_int_equal(url.port, good[i].port);
        assert_string_equal(url.path, good[i].path);
        sg_url_clear(&url);
        assert_null(url.text);
        sg_url_clear(&url);
    }
    static const char *const bad[] = {
        "",
        "host",
        "//host",
        "https://",
        "https://a@b",
        "https://h?x",
        "https://h/#x",
        "https://h:65536",
        "https://h:0",
        "https://[::1]x",
        "https://[]",
        "https://h:8x",
        "https://h:123456",
        "https://h h",
        "javascript:alert(1)",
        "https://\xc3\xa9.example.com",
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        struct sg_url url;
        assert_int_equal(sg_url_parse(bad[i], &url), SG_EINVAL);
        assert_null(url.text);
        assert_null(url.host);
    }
    struct sg_url url;
    assert_int_equal(sg_url_parse(NULL, &url), SG_EINVAL);
    sg_url_clear(NULL);
}

static void test_secret_file(void **state)
{
    static const struct {
        const char *json;
        const char *secret;
    } cases[] = {
        {WITH("'idp':{" IDP_BASE ",'client_secret_file':'secret.txt'}"), FILE_SECRET},
        {WITH("'idp':{" IDP_BASE ",'client_secret_file':'crlf.txt'}"), FILE_SECRET},
        /* Only one trailing newline is the editor's; the rest is the secret. */
        {WITH("'idp':{" IDP_BASE ",'client_secret_file':'two.txt'}"), FILE_SECRET "\n"},
        {WITH("'idp':{" IDP_BASE ",'client_secret_env':'SG_TEST_SECRET'}"), ENV_SECRET},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        struct sg_config *cfg = parse_ok(cases[i].json);
        assert_string_equal(cfg->idp->client_secret, cases[i].secret);
        sg_config_unref(cfg);
    }
    /* An absolute name is used as written, whatever the base directory. */
    char *json =
        sg_asprintf(WITH("'idp':{" IDP_BASE ",'client_secret_file':'%s/secret.txt'}"), tmpdir);
    char *text = json_text(json);
    struct sg_config *cfg = NULL;
    struct sg_config_error err;
    assert_int_equal(sg_config_parse("abs.json", "/nonexistent", text, strlen(text), &cfg, &err),
                     0);
    assert_string_equal(cfg->idp->client_secret, FILE_SECRET);
    assert_string_equal(cfg->data_dir, "/nonexistent/data");
    sg_config_unref(cfg);
    free(text);
    free(json);
}

static void test_load(void **state)
{
    char *path = sg_asprintf("%s/cfg.json", tmpdir);
    char *json = json_text(
        NO_D("'data_dir':'state','idp':{" IDP_BASE ",'client_secret_file':'secret.txt'}"));
    write_file("cfg.json", json, strlen(json));
    free(json);

    struct sg_config *cfg = NULL;
    struct sg_config_error err;
    assert_int_equal(sg_config_load(path, &cfg, &err), 0);
    assert_string_equal(cfg->path, path);
    char *data_dir = sg_asprintf("%s/state", tmpdir_real);
    assert_string_equal(cfg->data_dir, data_dir);
    free(data_dir);
    assert_string_equal(cfg->idp->client_secret, FILE_SECRET);

    /* References: the event loop and requests share one snapshot. */
    assert_ptr_equal(sg_config_ref(cfg), cfg);
    assert_int_equal(cfg->refcount, 2);
    sg_config_unref(cfg);
    assert_int_equal(cfg->refcount, 1);
    sg_config_unref(cfg);
    sg_config_unref(NULL);

    /* A bad file names itself and the key. */
    json = json_text(WITH("'workers':100"));
    write_file("cfg.json", json, strlen(json));
    free(json);
    assert_int_equal(sg_config_load(path, &cfg, &err), SG_ECONFIG);
    assert_null(cfg);
    assert_string_equal(err.file, path);
    assert_string_equal(err.key, "workers");
    free(path);

    path = sg_asprintf("%s/missing.json", tmpdir);
    assert_int_equal(sg_config_load(path, &cfg, &err), SG_ECONFIG);
    assert_string_equal(err.file, path);
    assert_string_equal(err.key, "");
    assert_non_null(strstr(err.message, "cannot read the file"));
    free(path);

    path = sg_asprintf("%s/adir", tmpdir);
    assert_int_equal(sg_config_load(path, &cfg, &err), SG_ECONFIG);
    assert_non_null(strstr(err.message, "not a regular file"));
    free(path);

    char *big = sg_malloc(SG_CONFIG_MAX_BYTES + 1);
    memset(big, ' ', SG_CONFIG_MAX_BYTES + 1);
    write_file("big.json", big, SG_CONFIG_MAX_BYTES + 1);
    free(big);
    path = sg_asprintf("%s/big.json", tmpdir);
    assert_int_equal(sg_config_load(path, &cfg, &err), SG_ECONFIG);
    assert_non_null(strstr(err.message, "larger than"));
    free(path);

    assert_int_equal(sg_config_load("", &cfg, NULL), SG_ECONFIG);
}

/* The documented examples under policy/ must load as shipped. */
static void test_policy_examples(void **state)
{
    static const struct {
        const char *file;
        const char *region;
        const char *module_url;
        bool idp;
    } examples[] = {
        {"us.json", "US", "https://bms.kaseya.com", true},
        {"uk.json", "UK", "https://bmsemea.kaseya.com", true},
        {"apac.json", "APAC", "https://bmsapac.kaseya.com", true},
        {"proxy-only.json", "US", "https://bms.kaseya.com", false},
        {"cluster.json", "US", "https://bms.kaseya.com", true},
    };
    setenv("SSOGATE_PG_CONNINFO",
           "host=10.0.0.5,10.0.0.6 target_session_attrs=read-write "
           "dbname=ssogate user=ssogate",
           1);
    for (size_t i = 0; i < SG_ARRAY_LEN(examples); i++) {
        char *path = sg_asprintf("%s/policy/%s", SG_SOURCE_DIR, examples[i].file);
        struct sg_config *cfg = NULL;
        struct sg_config_error err;
        int rc = sg_config_load(path, &cfg, &err);
        if (rc != 0)
            print_error("%s: %s: %s\n", err.file, err.key, err.message);
        assert_int_equal(rc, 0);
        assert_string_equal(cfg->region.name, examples[i].region);
        assert_string_equal(cfg->region.module_url, examples[i].module_url);
        assert_int_equal(cfg->idp != NULL, examples[i].idp);
        if (strcmp(examples[i].file, "cluster.json") == 0) {
            assert_int_equal(cfg->store.type, SG_STORE_TYPE_POSTGRESQL);
            assert_non_null(strstr(cfg->store.conninfo, "target_session_attrs=read-write"));
        } else {
            assert_int_equal(cfg->store.type, SG_STORE_TYPE_LMDB);
        }
        if (cfg->idp != NULL) {
            assert_true(cfg->idp->issuer.https);
            assert_string_equal(cfg->idp->client_secret, ENV_SECRET);
        }
        sg_config_unref(cfg);
        free(path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_claims_without_amr),
        cmocka_unit_test(test_claim_headers_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_hostile_sizes),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_regions),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_secret_file),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_policy_examples),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
