/*
 * ssogate-admin: the operator's tool on the gateway's store. LMDB lets it
 * work while the gateway runs; every change goes through links.h, with the
 * same one-to-one invariants and durability as the gateway's own.
 */
#include "sg_build.h"
#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/links.h"
#include "ssogate/store.h"
#include "ssogate/storecheck.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#define IMPORT_MAX (64 * 1024 * 1024)

static const char usage[] =
    "Usage: ssogate-admin (-c CONFIG | -d DATA_DIR) COMMAND [ARGS]\n"
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
    "  backup DIR                    a consistent, compacted copy of the store into DIR,\n"
    "                                while the gateway runs\n"
    "  restore DIR                   replaces the store by the backup in DIR, once it checks;\n"
    "                                refused while a gateway has the store open\n"
    "\n"
    "Exit status: 0 done, 1 refused or failed, 2 usage.\n";

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

static int cmd_export(struct sg_store *store)
{
    struct export_state st = {.g = yajl_gen_alloc(NULL)};
    yajl_gen_config(st.g, yajl_gen_beautify, 1);
    yajl_gen_map_open(st.g);
    yajl_gen_string(st.g, (const unsigned char *)"tenant_links", 12);
    yajl_gen_array_open(st.g);
    int err = sg_links_foreach(store, export_one, &st);
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

static int cmd_import(struct sg_store *store, const char *file)
{
    size_t len;
    char errbuf[256];
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
    int err = sg_links_import(store, links, nt + nu, &failed);
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

static int cmd_stats(struct sg_store *store)
{
    struct sg_store_stats stats;
    if (sg_store_stats(store, &stats) != 0) {
        fprintf(stderr, "ssogate-admin: stats: store failure\n");
        return 1;
    }
    for (int i = 0; i < SG_STORE_DB_COUNT; i++)
        printf("%-20s %zu\n", sg_store_db_name((enum sg_store_db)i), stats.entries[i]);
    printf("%-20s %zu of %zu bytes\n", "map", stats.map_used, stats.map_size);
    return 0;
}

/* Checks the store's invariants (storecheck.h); prints each problem. Returns the exit status. */
static int cmd_check(struct sg_store *store)
{
    size_t problems = 0;
    int err = sg_store_check(store, stdout, &problems);
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
    if (cmd_check(backup) != 0) {
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

static int run(struct sg_store **storep, const char *data_dir, int argc, char **argv)
{
    struct sg_store *store = *storep;
    const char *cmd = argv[0];
    if (strcmp(cmd, "check") == 0 && argc == 1)
        return cmd_check(store);
    if (strcmp(cmd, "backup") == 0 && argc == 2)
        return cmd_backup(store, argv[1]);
    if (strcmp(cmd, "restore") == 0 && argc == 2)
        return cmd_restore(storep, data_dir, argv[1]);
    if (strcmp(cmd, "list") == 0 && argc == 1)
        return sg_links_foreach(store, print_line, NULL) == 0 ? 0 : 1;
    if (strcmp(cmd, "export") == 0 && argc == 1)
        return cmd_export(store);
    if (strcmp(cmd, "import") == 0 && argc == 2)
        return cmd_import(store, argv[1]);
    if (strcmp(cmd, "stats") == 0 && argc == 1)
        return cmd_stats(store);
    if (strcmp(cmd, "remove-tenant") == 0 && argc == 2) {
        size_t users = 0;
        int err = sg_links_tenant_delete(store, argv[1], &users);
        if (err != 0) {
            fprintf(stderr, "ssogate-admin: remove-tenant %s: %s\n", argv[1], sg_strerror(err));
            return 1;
        }
        printf("removed the tenant link of %s and %zu user links\n", argv[1], users);
        return 0;
    }
    if (strcmp(cmd, "remove-user") == 0 && argc == 3) {
        int err = sg_links_user_delete(store, argv[1], argv[2]);
        if (err != 0) {
            fprintf(stderr, "ssogate-admin: remove-user %s %s: %s\n", argv[1], argv[2],
                    sg_strerror(err));
            return 1;
        }
        printf("removed the user link of %s/%s\n", argv[1], argv[2]);
        return 0;
    }
    fputs(usage, stderr);
    return 2;
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
    if ((config == NULL) == (data_dir == NULL) || optind >= argc) {
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
    struct sg_store *store = NULL;
    char errbuf[512];
    int rc;
    if (sg_store_open(data_dir, &store, errbuf, sizeof(errbuf)) != 0) {
        fprintf(stderr, "ssogate-admin: %s\n", errbuf);
        rc = 1;
    } else {
        rc = run(&store, data_dir, argc - optind, argv + optind);
        sg_store_close(store);
    }
    sg_config_unref(cfg);
    return rc;
}
