#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl/oplog.h"

static const uint64_t T0 = 1795270898123456789ull;

static void t_text_success(void **s)
{
	const struct pfs_logarg a[] = {PFS_LA_OCT("mode", 0755), PFS_LA_END};
	struct pfs_oprec r = {.op = "mkdir", .path = "/a/b", .args = a, .result = 0,
			      .t0_ns = T0, .t1_ns = T0 + 14000};
	char *out = pfs_oplog_format(PFS_LOG_TEXT, &r);

	(void)s;
	assert_string_equal(out, "2026-11-21T14:21:38.123456Z -> mkdir /a/b mode=0755\n"
				 "2026-11-21T14:21:38.123470Z <- mkdir /a/b = 0\n");
	free(out);
}

static void t_text_error_and_quoting(void **s)
{
	const struct pfs_logarg a[] = {PFS_LA_STR("name", "user.x y"), PFS_LA_INT("size", 3),
				       PFS_LA_HEX("flags", 2), PFS_LA_END};
	struct pfs_oprec r = {.op = "rename", .path = "/with space", .path2 = "/n\"q",
			      .args = a, .result = -ENOENT, .t0_ns = T0, .t1_ns = T0};
	char *out = pfs_oplog_format(PFS_LOG_TEXT, &r);

	(void)s;
	assert_non_null(strstr(out, "-> rename \"/with space\" to=\"/n\\\"q\" name=\"user.x y\" "
				    "size=3 flags=0x2\n"));
	assert_non_null(strstr(out, "<- rename \"/with space\" = -ENOENT\n"));
	free(out);
}

static void t_json(void **s)
{
	const struct pfs_logarg a[] = {PFS_LA_INT("size", 4096), PFS_LA_INT("offset", -1),
				       PFS_LA_OCT("mode", 0644), PFS_LA_END};
	struct pfs_oprec r = {.op = "write", .path = "/f", .args = a, .result = -EROFS,
			      .t0_ns = T0, .t1_ns = T0 + 2500000};
	char *out = pfs_oplog_format(PFS_LOG_JSON, &r);
	json_error_t e;
	json_t *o;

	(void)s;
	assert_non_null(out);
	assert_int_equal(out[strlen(out) - 1], '\n');
	assert_null(strchr(out, '\n') == out + strlen(out) - 1 ? NULL : "more than one line");
	o = json_loads(out, 0, &e);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "op")), "write");
	assert_string_equal(json_string_value(json_object_get(o, "path")), "/f");
	assert_string_equal(json_string_value(json_object_get(o, "time")),
			    "2026-11-21T14:21:38.123456Z");
	assert_int_equal(json_integer_value(json_object_get(o, "result")), -EROFS);
	assert_string_equal(json_string_value(json_object_get(o, "errno")), "EROFS");
	assert_int_equal(json_integer_value(json_object_get(o, "duration_us")), 2500);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "args"), "size")),
			 4096);
	assert_string_equal(json_string_value(json_object_get(json_object_get(o, "args"), "mode")),
			    "0644");
	assert_null(json_object_get(o, "path2"));
	json_decref(o);
	free(out);

	r.result = 10;
	r.path2 = "/g";
	out = pfs_oplog_format(PFS_LOG_JSON, &r);
	o = json_loads(out, 0, &e);
	assert_true(json_is_null(json_object_get(o, "errno")));
	assert_string_equal(json_string_value(json_object_get(o, "path2")), "/g");
	json_decref(o);
	free(out);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 1 << 16);

	assert_non_null(f);
	assert_non_null(buf);
	assert_true(fread(buf, 1, (1 << 16) - 1, f) > 0);
	fclose(f);
	return buf;
}

/* A full queue drops and counts instead of waiting. */
static void t_queue_drops(void **s)
{
	char path[] = "/tmp/prismfs-oplog-XXXXXX";
	int fd = mkstemp(path);
	struct pfs_oplog *lg;
	struct pfs_oprec r = {.op = "getattr", .path = "/x", .t0_ns = T0, .t1_ns = T0};
	char *text;

	(void)s;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(pfs_oplog_open(&lg, path, PFS_LOG_TEXT, 2), 0);
	/* No writer thread started: nothing drains. */
	for (int i = 0; i < 5; i++)
		pfs_oplog_op(lg, &r);
	assert_int_equal(pfs_oplog_dropped(lg), 3);
	assert_int_equal(pfs_oplog_close(lg), 3);
	text = slurp(path);
	assert_non_null(strstr(text, "# prismfs op log end: records=2 dropped=3\n"));
	free(text);
	unlink(path);
}

static void t_writer_thread(void **s)
{
	char path[] = "/tmp/prismfs-oplog-XXXXXX";
	int fd = mkstemp(path);
	struct pfs_oplog *lg;
	struct pfs_oprec r = {.op = "lookup", .path = "/y", .t0_ns = T0, .t1_ns = T0};
	char *text, *p;
	int lines = 0;

	(void)s;
	close(fd);
	assert_int_equal(pfs_oplog_open(&lg, path, PFS_LOG_JSON, 1024), 0);
	assert_int_equal(pfs_oplog_start(lg, "/src", "/mnt", NULL), 0);
	for (int i = 0; i < 100; i++)
		pfs_oplog_op(lg, &r);
	assert_int_equal(pfs_oplog_close(lg), 0);
	text = slurp(path);
	for (p = text; (p = strchr(p, '\n')); p++)
		lines++;
	assert_int_equal(lines, 102); /* start + 100 + end */
	assert_non_null(strstr(text, "{\"event\":\"start\""));
	assert_non_null(strstr(text, "{\"event\":\"end\",\"records\":100,\"dropped\":0}\n"));
	free(text);
	unlink(path);
}

static void t_open_error(void **s)
{
	struct pfs_oplog *lg;

	(void)s;
	assert_int_equal(pfs_oplog_open(&lg, "/nonexistent-dir/x.log", PFS_LOG_TEXT, 8), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_text_success), cmocka_unit_test(t_text_error_and_quoting),
		cmocka_unit_test(t_json),         cmocka_unit_test(t_queue_drops),
		cmocka_unit_test(t_writer_thread), cmocka_unit_test(t_open_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
