/* request.c: the in-flight set, ids, cleanups, query parameters, draining. */
#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/request.h"
#include "ssogate/snapshot.h"

#include <event2/http.h>
#include <event2/http_struct.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define CONFIG                                                                                     \
    "{\"listeners\":[{\"address\":\"127.0.0.1\",\"port\":8080}],"                                  \
    "\"public_url\":\"https://psa.example.com\",\"upstream\":{\"url\":\"http://127.0.0.1:9000\"}," \
    "\"data_dir\":\"/nonexistent\",\"log\":{\"access\":false}}"

struct fixture {
    struct sg_snapshot snap;
    struct sg_requests *set;
    struct evhttp_request *get, *post;
};

static int setup(void **state)
{
    struct fixture *f = sg_calloc(1, sizeof(*f));
    struct sg_config_error err;
    assert_int_equal(sg_config_parse("t.json", NULL, CONFIG, strlen(CONFIG), &f->snap.cfg, &err),
                     0);
    f->snap.refcount = 1;
    f->set = sg_requests_new();
    f->get = evhttp_request_new(NULL, NULL);
    f->get->type = EVHTTP_REQ_GET;
    f->post = evhttp_request_new(NULL, NULL);
    f->post->type = EVHTTP_REQ_POST;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->snap.refcount, 1); /* every request gave its reference back */
    sg_requests_free(f->set);
    evhttp_request_free(f->get);
    evhttp_request_free(f->post);
    sg_config_unref(f->snap.cfg);
    free(f);
    return 0;
}

static void test_in_flight_and_ids(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(sg_requests_in_flight(f->set), 0);
    struct sg_request *a = sg_request_begin(f->set, NULL, &f->snap, f->get, NULL);
    struct sg_request *b = sg_request_begin(f->set, NULL, &f->snap, f->post, NULL);
    assert_int_equal(sg_requests_in_flight(f->set), 2);
    assert_int_equal(f->snap.refcount, 3);
    assert_string_equal(a->method, "GET");
    assert_string_equal(b->method, "POST");
    assert_int_equal(strlen(a->id), 24); /* 16 hex digits of random prefix, a counter */
    assert_string_not_equal(a->id, b->id);
    assert_memory_equal(a->id, b->id, 16); /* one prefix per process */
    assert_false(sg_request_waiting(a));
    sg_request_finish(a, 200, 10);
    assert_int_equal(sg_requests_in_flight(f->set), 1);
    sg_request_finish(b, 404, 0);
    assert_int_equal(sg_requests_in_flight(f->set), 0);
}

struct mark {
    char *log;
    const char *tag;
};

static void record(struct sg_request *r, void *arg)
{
    const struct mark *m = arg;
    strcat(m->log, m->tag);
    strcat(m->log, r->method);
}

static void test_cleanups_run_once_newest_first(void **state)
{
    struct fixture *f = *state;
    char log[32] = "";
    struct mark first = {log, "1"}, second = {log, "2"};
    struct sg_request *r = sg_request_begin(f->set, NULL, &f->snap, f->get, NULL);
    sg_request_on_finish(r, record, &first);
    sg_request_on_finish(r, record, &second);
    assert_string_equal(log, "");
    sg_request_finish(r, 200, 0);
    assert_string_equal(log, "2GET1GET");
}

static void test_params(void **state)
{
    struct fixture *f = *state;
    struct sg_request *r = sg_request_begin(f->set, NULL, &f->snap, f->get, NULL);
    static const char raw[] = "/_sso/login?return_to=%2Fa%3Fb&x=1&x=2&empty=";
    struct sg_target_options opts = {.host = "psa.example.com", .port = 443, .https = true};
    assert_int_equal(sg_target_normalize(raw, strlen(raw), &opts, &r->target), SG_TARGET_OK);
    assert_string_equal(sg_request_param(r, "return_to"), "/a?b");
    assert_string_equal(sg_request_param(r, "x"), "1"); /* the first of a repeated name */
    assert_string_equal(sg_request_param(r, "empty"), "");
    assert_null(sg_request_param(r, "missing"));
    sg_request_finish(r, 302, 0);

    r = sg_request_begin(f->set, NULL, &f->snap, f->get, NULL);
    assert_null(sg_request_param(r, "return_to")); /* no target yet: no parameters */
    sg_request_finish(r, 400, 0);
}

static void test_draining(void **state)
{
    struct fixture *f = *state;
    struct sg_request *r = sg_request_begin(f->set, NULL, &f->snap, f->get, NULL);
    assert_false(sg_request_draining(r));
    sg_requests_drain(f->set);
    assert_true(sg_requests_draining(f->set));
    assert_true(sg_request_draining(r));
    sg_request_finish(r, 200, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_in_flight_and_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cleanups_run_once_newest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_draining, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
