/*
 * ssogate-test-store DATA_DIR: fills an LMDB store with links and sessions
 * for the integration tests (admin_pg.test.js), with ids a JSON import
 * cannot carry (bytes that are not UTF-8) and sessions without logging in.
 * Reads commands from standard input, one a line, fields separated by one
 * space; each string field is hex-encoded, "-" for absent:
 *
 *   tenant PSA_TENANT IDP_TENANT
 *   user PSA_TENANT PSA_USER IDP_TENANT IDP_SUB STAFF ACTIVE   (0/1, "-" for no facts)
 *   session CREATED LAST_SEEN IDLE_S EXPIRES ISSUER SUB IDP_TENANT PSA_TENANT PSA_USER SID
 *
 * Prints the id of each session made, one a line. Exits 0, or 1 at the
 * first command refused (the line and the error on standard error).
 */
#include "ssogate/common.h"
#include "ssogate/links.h"
#include "ssogate/session.h"
#include "ssogate/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELDS_MAX 12

/* Decodes a hex field in place into a NUL-terminated string; "-" is NULL. */
static char *unhex(char *field)
{
    if (strcmp(field, "-") == 0)
        return NULL;
    size_t len = strlen(field) / 2;
    for (size_t i = 0; i < len; i++) {
        unsigned byte;
        if (sscanf(field + 2 * i, "%2x", &byte) != 1)
            return NULL;
        field[i] = (char)byte;
    }
    field[len] = '\0';
    return field;
}

static int run(struct sg_store *store, char **f, int n)
{
    if (strcmp(f[0], "tenant") == 0 && n == 3)
        return sg_links_tenant_put(store, unhex(f[1]), unhex(f[2]));
    if (strcmp(f[0], "user") == 0 && n == 7) {
        struct sg_links_user_facts facts = {.known = strcmp(f[5], "-") != 0,
                                            .staff = strcmp(f[5], "1") == 0,
                                            .active = strcmp(f[6], "1") == 0};
        return sg_links_user_put(store, unhex(f[1]), unhex(f[2]), unhex(f[3]), unhex(f[4]), &facts);
    }
    if (strcmp(f[0], "session") == 0 && n == 11) {
        struct sg_session s = {
            .created_at = strtoll(f[1], NULL, 10),
            .last_seen = strtoll(f[2], NULL, 10),
            .idle_timeout_s = (uint32_t)strtoul(f[3], NULL, 10),
            .expires_at = strtoll(f[4], NULL, 10),
            .idp_issuer = unhex(f[5]),
            .idp_sub = unhex(f[6]),
            .idp_tenant = unhex(f[7]),
            .psa_tenant = unhex(f[8]),
            .psa_user = unhex(f[9]),
            .idp_sid = unhex(f[10]),
        };
        char id[SG_SESSION_ID_SIZE];
        sg_session_new_id(id);
        int err = sg_session_create(store, id, &s);
        if (err == 0)
            printf("%s\n", id);
        return err;
    }
    return SG_EINVAL;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: ssogate-test-store DATA_DIR < COMMANDS\n");
        return 2;
    }
    struct sg_store *store = NULL;
    char errbuf[256];
    if (sg_store_open(argv[1], &store, errbuf, sizeof(errbuf)) != 0) {
        fprintf(stderr, "ssogate-test-store: %s\n", errbuf);
        return 1;
    }
    char line[4096];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), stdin) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char copy[sizeof(line)];
        strcpy(copy, line);
        char *fields[FIELDS_MAX];
        int n = 0;
        for (char *save = NULL, *tok = strtok_r(line, " ", &save); tok != NULL && n < FIELDS_MAX;
             tok = strtok_r(NULL, " ", &save))
            fields[n++] = tok;
        if (n == 0)
            continue;
        int err = run(store, fields, n);
        if (err != 0) {
            fprintf(stderr, "ssogate-test-store: %s: %s\n", copy, sg_strerror(err));
            rc = 1;
        }
    }
    sg_store_close(store);
    return rc;
}
