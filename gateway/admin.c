/*
 * ssogate-admin: the operator's tool on the gateway's store, LMDB or
 * PostgreSQL as the configuration's store.type says.
 *
 * LMDB (-d DATA_DIR, or -c with store.type lmdb): it may work while the
 * gateway runs; every change goes through links.h, with the same one-to-one
 * invariants and durability as the gateway's own; backup and restore are
 * LMDB's.
 *
 * PostgreSQL (-c with store.type postgresql): the same link commands through
 * pgadmin.h (same rules and messages, an audit row per link changed), once
 * the database holds this build's schema; migrate applies it, check-store
 * says whether the database is reachable and current, and copy moves an
 * LMDB store (links and live sessions) into the database in one transaction.
 * Backups of PostgreSQL are pg_dump's.
 */
#include "sg_build.h"
#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/links.h"
#include "ssogate/pgadmin.h"
#include "ssogate/pgschema.h"
#include "ssogate/store.h"
#include "ssogate/storecheck.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#define IMPORT_MAX (64 * 1024 * 1024)

/* Bounds the wait for an unreachable database: the tool answers, it does not hang. */
#define CONNECT_TIMEOUT_S 10

static const char usage[] =
    "Usage: ssogate-admin (-c CONFIG | -d DATA_DIR) COMMAND [ARGS]\n"
    "\n"
    "The store is the configuration's store.type: LMDB in data_dir (also with -d), or\n"
    "PostgreSQL.\n"
    "\n"
    "Commands:\n"
    "  list                          the links, one per line\n"
    "  export                        the links as JSON on standard output\n"
    "  import FILE                   adds the links of an export (- for standard input);\n"
    "                                refused whole, with nothing changed, on any conflict\n"
    "  remove-tenant PSA_TENANT      unlinks a tenant, its user links and their sessions\n"
    "  remove-user PSA_TENANT USER   unlinks a user and ends their sessions\n"
    "  stats                         record counts of the store\n"
    "  check                         verifies the schema and the link invariants (both\n"
    "                                directions agree, no user link without its tenant link)\n"
    "  backup DIR                    LMDB: a consistent, compacted copy of the store into\n"
    "                                DIR, while the gateway runs (PostgreSQL: pg_dump)\n"
    "  restore DIR                   LMDB: replaces the store by the backup in DIR, once it\n"
    "                                checks; refused while a gateway has the store open\n"
    "\n"
    "PostgreSQL (-c, store.type postgresql):\n"
    "  migrate                       applies this build's schema to the database\n"
    "  check-store                   connects, checks the schema version, prints the counts\n"
    "  copy --from lmdb --to postgresql\n"
    "                                copies the links and live sessions of the LMDB store in\n"
    "                                data_dir into PostgreSQL, in one transaction: refused\n"
    "                                whole on a conflicting link; links already there are\n"
    "                                left alone, so a second copy changes nothing\n"
    "\n"
    "Exit status: 0 done, 1 refused or failed, 2 usage.\n";

/* The store a command works on: LMDB (store) or PostgreSQL (pg); the other is NULL. */
struct target {
    struct sg_store *store;
    PGconn *pg;
    const char *data_dir;
};

/* Walks the links of either store; a PostgreSQL failure is printed. */
static int links_foreach(const struct target *t, sg_links_foreach_fn fn, void *arg)
{
    if (t->pg == NULL)
        return sg_links_foreach(t->store, fn, arg);
    char errbuf[512];
    int err = sg_pgadmin_foreach(t->pg, fn, arg, errbuf, sizeof(errbuf));
    if (err == SG_ESTORE)
        fprintf(stderr, "ssogate-admin: %s\n", errbuf);
    return err;
}

static int print_line(const struct sg_link *link, void *arg)
{
    if (link->kind == SG_LINK_TENANT)
        printf("tenant %s <-> %s\n", link->psa_tenant, link->idp_tenant);
    else
        printf("user   %s/%s <-> %s/%s\n", link->psa_tenant, link->psa_user, link->idp_tenant,
               link->idp_sub);
    return 0;
}

static void gen_pair(yajl_gen g, const char *key, const char *value)
{
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
    yajl_gen_string(g, (const unsigned char *)value, strlen(value));
}

struct export_state {
    yajl_gen g;
    bool in_users;
};

static int export_one(const struct sg_link *link, void *arg)
{
    struct export_state *st = arg;
    if (link->kind == SG_LINK_USER && !st->in_users) {
        yajl_gen_array_close(st->g);
        yajl_gen_string(st->g, (const unsigned char *)"user_links", 10);
        yajl_gen_array_open(st->g);
        st->in_users = true;
    }
    yajl_gen_map_open(st->g);
    gen_pair(st->g, "psa_tenant", link->psa_tenant);
    if (link->kind == SG_LINK_USER)
        gen_pair(st->g, "psa_user", link->psa_user);
    gen_pair(st->g, "idp_tenant", link->idp_tenant);
    if (link->kind == SG_LINK_USER)
        gen_pair(st->g, "idp_sub", link->idp_sub);
    yajl_gen_map_close(st->g);
    return 0;
}

static int cmd_export(const struct target *t)
{
    struct export_state st = {.g = yajl_gen_alloc(NULL)};
    yajl_gen_config(st.g, yajl_gen_beautify, 1);
    yajl_gen_map_open(st.g);
    yajl_gen_string(st.g, (const unsigned char *)"tenant_links", 12);
    yajl_gen_array_open(st.g);
    int err = links_foreach(t, export_one, &st);
    if (!st.in_users) {
        yajl_gen_array_close(st.g);
        yajl_gen_string(st.g, (const unsigned char *)"user_links", 10);
        yajl_gen_array_open(st.g);
    }
    yajl_gen_array_close(st.g);
    yajl_gen_map_close(st.g);
    if (err == 0) {
        const unsigned char *buf;
        size_t len;
        yajl_gen_get_buf(st.g, &buf, &len);
        fwrite(buf, 1, len, stdout);
    } else {
        fprintf(stderr, "ssogate-admin: export: %s\n", sg_strerror(err));
    }
    yajl_gen_free(st.g);
    return err == 0 ? 0 : 1;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 65536, n = 0;
    char *buf = sg_malloc(cap + 1);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            if (cap >= IMPORT_MAX) {
                free(buf);
                buf = NULL;
                break;
            }
            cap *= 2;
            buf = sg_realloc(buf, cap + 1);
        }
    }
    if (f != stdin)
        fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static const char *member(yajl_val obj, const char *name)
{
    const char *path[] = {name, NULL};
    yajl_val v = yajl_tree_get(obj, path, yajl_t_string);
    return v ? YAJL_GET_STRING(v) : NULL;
}

static int cmd_import(const struct target *t, const char *file)
{
    size_t len;
    char errbuf[512];
    char *text = read_all(file, &len);
    if (text == NULL) {
        fprintf(stderr, "ssogate-admin: import: cannot read %s\n", file);
        return 1;
    }
    yajl_val doc = yajl_tree_parse(text, errbuf, sizeof(errbuf));
    free(text);
    if (doc == NULL || !YAJL_IS_OBJECT(doc)) {
        fprintf(stderr, "ssogate-admin: import: %s: not a JSON object: %s\n", file, errbuf);
        yajl_tree_free(doc);
        return 1;
    }
    const char *tenants_path[] = {"tenant_links", NULL};
    const char *users_path[] = {"user_links", NULL};
    yajl_val tenants = yajl_tree_get(doc, tenants_path, yajl_t_array);
    yajl_val users = yajl_tree_get(doc, users_path, yajl_t_array);
    size_t nt = tenants ? tenants->u.array.len : 0, nu = users ? users->u.array.len : 0;
    struct sg_link *links = sg_calloc(nt + nu, sizeof(*links));
    int rc = 0;
    for (size_t i = 0; i < nt + nu; i++) {
        yajl_val item = i < nt ? tenants->u.array.values[i] : users->u.array.values[i - nt];
        struct sg_link *l = &links[i];
        l->kind = i < nt ? SG_LINK_TENANT : SG_LINK_USER;
        l->psa_tenant = member(item, "psa_tenant");
        l->idp_tenant = member(item, "idp_tenant");
        if (l->kind == SG_LINK_USER) {
            l->psa_user = member(item, "psa_user");
            l->idp_sub = member(item, "idp_sub");
        }
        if (l->psa_tenant == NULL || l->idp_tenant == NULL ||
            (l->kind == SG_LINK_USER && (l->psa_user == NULL || l->idp_sub == NULL))) {
            fprintf(stderr, "ssogate-admin: import: %s[%zu]: a field is missing\n",
                    i < nt ? "tenant_links" : "user_links", i < nt ? i : i - nt);
            rc = 1;
            goto end;
        }
    }
    size_t failed = 0;
    int err = t->pg != NULL ? sg_pgadmin_import(t->pg, links, nt + nu, "admin", &failed, NULL,
                                                errbuf, sizeof(errbuf))
                            : sg_links_import(t->store, links, nt + nu, &failed);
    if (err == SG_ESTORE && t->pg != NULL) {
        fprintf(stderr, "ssogate-admin: import failed, nothing changed: %s\n", errbuf);
        rc = 1;
        goto end;
    }
    if (err != 0) {
        fprintf(stderr, "ssogate-admin: import refused, nothing changed: %s[%zu]: %s\n",
                failed < nt ? "tenant_links" : "user_links", failed < nt ? failed : failed - nt,
                err == SG_EEXIST ? "conflicts with an existing link" : sg_strerror(err));
        rc = 1;
        goto end;
    }
    printf("imported %zu tenant links and %zu user links\n", nt, nu);

end:
    free(links);
    yajl_tree_free(doc);
    return rc;
}

static int cmd_stats(const struct target *t)
{
    if (t->pg != NULL) {
        struct sg_pgadmin_stats stats;
        char errbuf[512];
        if (sg_pgadmin_stats(t->pg, &stats, errbuf, sizeof(errbuf)) != 0) {
            fprintf(stderr, "ssogate-admin: stats: %s\n", errbuf);
            return 1;
        }
        printf("%-20s %zu\n%-20s %zu\n%-20s %zu\n%-20s %zu\n%-20s %zu\n%-20s %zu\n", "tenant_links",
               stats.tenant_links, "user_links", stats.user_links, "sessions", stats.sessions,
               "login_states", stats.login_states, "link_audit", stats.link_audit, "logout_jti",
               stats.logout_jti);
        return 0;
    }
    struct sg_store_stats stats;
    if (sg_store_stats(t->store, &stats) != 0) {
        fprintf(stderr, "ssogate-admin: stats: store failure\n");
        return 1;
    }
    for (int i = 0; i < SG_STORE_DB_COUNT; i++)
        printf("%-20s %zu\n", sg_store_db_name((enum sg_store_db)i), stats.entries[i]);
    printf("%-20s %zu of %zu bytes\n", "map", stats.map_used, stats.map_size);
    return 0;
}

/* Checks the store's invariants (storecheck.h, pgadmin.h); prints each problem. Returns the exit
 * status. */
static int cmd_check(struct sg_store *store, PGconn *pg)
{
    size_t problems = 0;
    char errbuf[512];
    int err = pg != NULL ? sg_pgadmin_check(pg, stdout, &problems, errbuf, sizeof(errbuf))
                         : sg_store_check(store, stdout, &problems);
    return err == 0 && problems == 0 ? 0 : 1;
}

static int cmd_backup(struct sg_store *store, const char *dir)
{
    char errbuf[512];
    if (sg_store_backup(store, dir, errbuf, sizeof(errbuf)) != 0) {
        fprintf(stderr, "ssogate-admin: backup: %s\n", errbuf);
        return 1;
    }
    printf("backup written to %s\n", dir);
    return 0;
}

/* Checks the backup, makes sure no gateway has the store open, then swaps it in. */
static int cmd_restore(struct sg_store **store, const char *data_dir, const char *dir)
{
    char errbuf[512];
    unsigned users = 0;
    if (sg_store_other_users(*store, &users) != 0 || users > 0) {
        fprintf(stderr,
                "ssogate-admin: restore: %u other processes have the store open: stop the "
                "gateway first\n",
                users);
        return 1;
    }
    struct sg_store *backup = NULL;
    if (sg_store_open(dir, &backup, errbuf, sizeof(errbuf)) != 0) {
        fprintf(stderr, "ssogate-admin: restore: %s\n", errbuf);
        return 1;
    }
    if (cmd_check(backup, NULL) != 0) {
        sg_store_close(backup);
        fprintf(stderr,
                "ssogate-admin: restore: the backup in %s does not check: nothing changed\n", dir);
        return 1;
    }
    sg_store_close(*store);
    *store = NULL;
    int err = sg_store_restore(backup, data_dir, errbuf, sizeof(errbuf));
    sg_store_close(backup);
    if (err != 0) {
        fprintf(stderr, "ssogate-admin: restore: %s\n", errbuf);
        return 1;
    }
    printf("restored %s from %s\n", data_dir, dir);
    return 0;
}

static int cmd_remove_tenant(const struct target *t, const char *psa_tenant)
{
    size_t users = 0, sessions = 0;
    char errbuf[512] = "";
    int err = t->pg != NULL ? sg_pgadmin_tenant_delete(t->pg, psa_tenant, "admin", &users,
                                                       &sessions, errbuf, sizeof(errbuf))
                            : sg_links_tenant_delete(t->store, psa_tenant, &users);
    if (err != 0) {
        fprintf(stderr, "ssogate-admin: remove-tenant %s: %s\n", psa_tenant,
                err == SG_ESTORE && errbuf[0] != '\0' ? errbuf : sg_strerror(err));
        return 1;
    }
    printf("removed the tenant link of %s and %zu user links", psa_tenant, users);
    if (t->pg != NULL)
        printf("; %zu sessions ended", sessions);
    putchar('\n');
    return 0;
}

static int cmd_remove_user(const struct target *t, const char *psa_tenant, const char *psa_user)
{
    size_t sessions = 0;
    char errbuf[512] = "";
    int err = t->pg != NULL ? sg_pgadmin_user_delete(t->pg, psa_tenant, psa_user, "admin",
                                                     &sessions, errbuf, sizeof(errbuf))
                            : sg_links_user_delete(t->store, psa_tenant, psa_user);
    if (err != 0) {
        fprintf(stderr, "ssogate-admin: remove-user %s %s: %s\n", psa_tenant, psa_user,
                err == SG_ESTORE && errbuf[0] != '\0' ? errbuf : sg_strerror(err));
        return 1;
    }
    printf("removed the user link of %s/%s", psa_tenant, psa_user);
    if (t->pg != NULL)
        printf("; %zu sessions ended", sessions);
    putchar('\n');
    return 0;
}

static int cmd_migrate(PGconn *pg)
{
    char errbuf[512];
    int from = 0, to = 0;
    if (sg_pgschema_migrate(pg, &from, &to, errbuf, sizeof(errbuf)) != 0) {
        fprintf(stderr, "ssogate-admin: migrate: %s\n", errbuf);
        return 1;
    }
    if (from == to)
        printf("schema version %d: already this build's, nothing to do\n", to);
    else
        printf("schema migrated from version %d to %d\n", from, to);
    return 0;
}

/* The database answers and holds this build's schema; prints its counts. */
static int cmd_check_store(PGconn *pg)
{
    char errbuf[512];
    struct target t = {.pg = pg};
    if (sg_pgschema_check(pg, errbuf, sizeof(errbuf)) != 0) {
        fprintf(stderr, "ssogate-admin: check-store: %s\n", errbuf);
        return 1;
    }
    printf("PostgreSQL store reachable, schema version %d (this build's)\n", SG_PGSCHEMA_VERSION);
    return cmd_stats(&t);
}

/*
 * copy --from lmdb --to postgresql: the LMDB store in data_dir into the
 * database, in one transaction (pgadmin.h, sg_pgadmin_copy).
 */
static int cmd_copy(PGconn *pg, const char *data_dir)
{
    char errbuf[512];
    struct sg_store *store = NULL;
    if (sg_store_open(data_dir, &store, errbuf, sizeof(errbuf)) != 0) {
        fprintf(stderr, "ssogate-admin: copy: the LMDB store: %s\n", errbuf);
        return 1;
    }
    unsigned users = 0;
    if (sg_store_other_users(store, &users) == 0 && users > 0)
        fprintf(stderr,
                "ssogate-admin: copy: warning: %u other processes have the LMDB store open: what "
                "they change from now on is not copied\n",
                users);
    struct sg_pgadmin_copy_counts c;
    int err = sg_pgadmin_copy(pg, store, sg_now_s(), &c, errbuf, sizeof(errbuf));
    sg_store_close(store);
    if (err != 0) {
        fprintf(stderr, "ssogate-admin: copy %s, nothing written: %s\n",
                err == SG_ESTORE ? "failed" : "refused", errbuf);
        return 1;
    }
    if (c.tenant_links + c.user_links + c.sessions == 0)
        printf("nothing to copy: PostgreSQL already holds the %zu tenant links, %zu user links "
               "and %zu sessions of the LMDB store\n",
               c.tenant_present, c.user_present, c.session_present);
    else
        printf("copied %zu tenant links, %zu user links and %zu sessions to PostgreSQL (already "
               "there: %zu tenant links, %zu user links, %zu sessions)\n",
               c.tenant_links, c.user_links, c.sessions, c.tenant_present, c.user_present,
               c.session_present);
    if (c.session_expired + c.session_malformed > 0)
        printf("skipped %zu expired and %zu unreadable sessions\n", c.session_expired,
               c.session_malformed);
    return 0;
}

/* Where a command works. */
enum scope {
    ANY_STORE,
    LMDB_ONLY,
    POSTGRESQL_ONLY,
};

static const struct command {
    const char *name;
    int args; /* after the name */
    enum scope scope;
} commands[] = {
    {"list", 0, ANY_STORE},
    {"export", 0, ANY_STORE},
    {"import", 1, ANY_STORE},
    {"remove-tenant", 1, ANY_STORE},
    {"remove-user", 2, ANY_STORE},
    {"stats", 0, ANY_STORE},
    {"check", 0, ANY_STORE},
    {"backup", 1, LMDB_ONLY},
    {"restore", 1, LMDB_ONLY},
    {"migrate", 0, POSTGRESQL_ONLY},
    {"check-store", 0, POSTGRESQL_ONLY},
    {"copy", 4, POSTGRESQL_ONLY},
};

/* The command argv names, with its arguments, or NULL (a usage error). */
static const struct command *find_command(int argc, char **argv)
{
    for (size_t i = 0; i < SG_ARRAY_LEN(commands); i++) {
        if (strcmp(argv[0], commands[i].name) != 0 || argc != commands[i].args + 1)
            continue;
        /* One direction today: the words say it, so that a later one cannot be mistaken. */
        if (strcmp(argv[0], "copy") == 0 &&
            (strcmp(argv[1], "--from") != 0 || strcmp(argv[2], "lmdb") != 0 ||
             strcmp(argv[3], "--to") != 0 || strcmp(argv[4], "postgresql") != 0))
            return NULL;
        return &commands[i];
    }
    return NULL;
}

/* Runs a command on either store (ANY_STORE, LMDB_ONLY with t->store). */
static int run(struct target *t, int argc, char **argv)
{
    const char *cmd = argv[0];
    if (strcmp(cmd, "check") == 0)
        return cmd_check(t->store, t->pg);
    if (strcmp(cmd, "backup") == 0)
        return cmd_backup(t->store, argv[1]);
    if (strcmp(cmd, "restore") == 0)
        return cmd_restore(&t->store, t->data_dir, argv[1]);
    if (strcmp(cmd, "list") == 0)
        return links_foreach(t, print_line, NULL) == 0 ? 0 : 1;
    if (strcmp(cmd, "export") == 0)
        return cmd_export(t);
    if (strcmp(cmd, "import") == 0)
        return cmd_import(t, argv[1]);
    if (strcmp(cmd, "stats") == 0)
        return cmd_stats(t);
    if (strcmp(cmd, "remove-tenant") == 0)
        return cmd_remove_tenant(t, argv[1]);
    if (strcmp(cmd, "remove-user") == 0)
        return cmd_remove_user(t, argv[1], argv[2]);
    fputs(usage, stderr);
    return 2;
}

/*
 * Runs a command on the PostgreSQL store of cfg: every command but migrate
 * and check-store first needs the database to hold this build's schema.
 */
static int run_postgresql(const struct sg_config *cfg, const struct command *command, int argc,
                          char **argv)
{
    char errbuf[512];
    if (command->scope == LMDB_ONLY) {
        fprintf(stderr,
                "ssogate-admin: %s works on an LMDB store; this configuration's store is "
                "PostgreSQL: use pg_dump and pg_restore\n",
                command->name);
        return 1;
    }
    PGconn *pg =
        sg_pgschema_connect(cfg->store.conninfo, CONNECT_TIMEOUT_S, errbuf, sizeof(errbuf));
    if (pg == NULL) {
        fprintf(stderr, "ssogate-admin: %s: %s\n", command->name, errbuf);
        return 1;
    }
    int rc;
    if (strcmp(command->name, "migrate") == 0) {
        rc = cmd_migrate(pg);
    } else if (strcmp(command->name, "check-store") == 0) {
        rc = cmd_check_store(pg);
    } else if (sg_pgschema_check(pg, errbuf, sizeof(errbuf)) != 0) {
        fprintf(stderr, "ssogate-admin: %s: %s\n", command->name, errbuf);
        rc = 1;
    } else if (strcmp(command->name, "copy") == 0) {
        rc = cmd_copy(pg, cfg->data_dir);
    } else {
        struct target t = {.pg = pg};
        rc = run(&t, argc, argv);
    }
    PQfinish(pg);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *data_dir = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "+c:d:hV", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case 'd':
            data_dir = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case 'V':
            printf("ssogate-admin %s\n", SG_VERSION);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    const struct command *command =
        optind < argc ? find_command(argc - optind, argv + optind) : NULL;
    if ((config == NULL) == (data_dir == NULL) || command == NULL) {
        fputs(usage, stderr);
        return 2;
    }
    struct sg_config *cfg = NULL;
    if (config != NULL) {
        struct sg_config_error cerr = {0};
        if (sg_config_load(config, &cfg, &cerr) != 0) {
            fprintf(stderr, "ssogate-admin: %s: %s: %s\n", cerr.file, cerr.key, cerr.message);
            return 1;
        }
        data_dir = cfg->data_dir;
    }
    int rc;
    if (cfg != NULL && cfg->store.type == SG_STORE_TYPE_POSTGRESQL) {
        rc = run_postgresql(cfg, command, argc - optind, argv + optind);
    } else if (command->scope == POSTGRESQL_ONLY) {
        fprintf(stderr,
                "ssogate-admin: %s needs a configuration (-c) whose store.type is postgresql\n",
                command->name);
        rc = 1;
    } else {
        char errbuf[512];
        struct target t = {.data_dir = data_dir};
        if (sg_store_open(data_dir, &t.store, errbuf, sizeof(errbuf)) != 0) {
            fprintf(stderr, "ssogate-admin: %s\n", errbuf);
            rc = 1;
        } else {
            rc = run(&t, argc - optind, argv + optind);
            sg_store_close(t.store);
        }
    }
    sg_config_unref(cfg);
    return rc;
}
