#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map/mapping.h"

static struct pfs_map *parse_ok(const char *json)
{
	char err[PFS_MAP_ERRLEN] = "untouched";
	struct pfs_map *m = NULL;
	int rc = pfs_map_parse(json, strlen(json), &m, err);

	if (rc != 0)
		fail_msg("parse of %s failed: %d %s", json, rc, err);
	assert_non_null(m);
	assert_string_equal(err, "");
	return m;
}

/* The error must be one line and contain every fragment given. */
static void parse_bad_len(const char *json, size_t len, const char *want1, const char *want2)
{
	char err[PFS_MAP_ERRLEN];
	struct pfs_map *m = (struct pfs_map *)1;
	int rc = pfs_map_parse(json, len, &m, err);

	if (rc != -EINVAL)
		fail_msg("parse of %.*s: want -EINVAL, got %d", (int)len, json, rc);
	assert_null(m);
	assert_true(strlen(err) > 0 && strlen(err) < PFS_MAP_ERRLEN);
	assert_null(strchr(err, '\n'));
	if (!strstr(err, want1) || (want2 && !strstr(err, want2)))
		fail_msg("parse of %.*s: error \"%s\" lacks \"%s\" / \"%s\"", (int)len, json, err,
			 want1, want2 ? want2 : "");
}

static void parse_bad(const char *json, const char *want1, const char *want2)
{
	parse_bad_len(json, strlen(json), want1, want2);
}

static void t_syntax(void **s)
{
	(void)s;
	parse_bad("{\"/a\": {}", "line 1, column 9: ", NULL);
	parse_bad("{\n \"/a\": {\n\"target\" \"x\"}}", "line 3, column 12: ", "':' expected");
	/* jansson stops at the first byte after the object unless told not to. */
	parse_bad("{} x", "line 1, column 4: ", "end of file expected");
	parse_bad_len("{}\0", 3, "line 1, column ", "end of file expected");
	parse_bad("", "line 1, column 0: ", NULL);
	parse_bad("{\"/a\": {}, \"/a\": {\"target\": \"x\"}}", "line 1, column 15: ",
		  "duplicate object key");
	parse_bad("{\"/a\": {\"target\": \"x\",\n \"target\": \"y\"}}", "line 2, column ",
		  "duplicate object key");
	/* A NUL in a key never reaches our checks: jansson refuses it. */
	parse_bad("{\"/a\\u0000b\": {}}", "line 1, column 12: ", "NUL byte in object key");
	parse_bad("{\"/a\": {\"mode\": 0644}}", "line 1, column ", NULL);
}

static void t_syntax_error_is_one_line(void **s)
{
	char err[PFS_MAP_ERRLEN];
	struct pfs_map *m;

	(void)s;
	/* jansson quotes the token it stopped at; a control byte in it must
	 * not break the line. */
	assert_int_equal(pfs_map_parse("{\"/a\": x\001\n}", 11, &m, err), -EINVAL);
	assert_null(strchr(err, '\n'));
	assert_null(strchr(err, '\001'));
}

static void t_top_level(void **s)
{
	(void)s;
	parse_bad("[]", "top level: not an object", NULL);
	parse_bad("null", "top level: not an object", NULL);
	parse_bad("\"x\"", "top level: not an object", NULL);
	parse_bad("5", "top level: not an object", NULL);
}

static void t_bad_keys(void **s)
{
	char big[5000];
	char json[5100];

	(void)s;
	parse_bad("{\"a\": {}}", "key \"a\": not absolute", NULL);
	parse_bad("{\"\": {}}", "key \"\": not absolute", NULL);
	parse_bad("{\"/a/\": {}}", "key \"/a/\": trailing slash", NULL);
	parse_bad("{\"//\": {}}", "key \"//\": trailing slash", NULL);
	parse_bad("{\"/a//b\": {}}", "key \"/a//b\": empty component", NULL);
	parse_bad("{\"//a\": {}}", "key \"//a\": empty component", NULL);
	parse_bad("{\"/a/./b\": {}}", "key \"/a/./b\": \".\" component", NULL);
	parse_bad("{\"/.\": {}}", "key \"/.\": \".\" component", NULL);
	parse_bad("{\"/a/../b\": {}}", "key \"/a/../b\": \"..\" component", NULL);
	parse_bad("{\"/a/..\": {}}", "key \"/a/..\": \"..\" component", NULL);

	/* 255 bytes is a valid component, 256 is not. */
	big[0] = '/';
	memset(big + 1, 'c', 255);
	big[256] = '\0';
	snprintf(json, sizeof(json), "{\"%s\": {}}", big);
	pfs_map_unref(parse_ok(json));
	big[256] = 'c';
	big[257] = '\0';
	snprintf(json, sizeof(json), "{\"%s\": {}}", big);
	parse_bad(json, "\": component longer than 255 bytes", "key \"/ccc");

	/* 4095 bytes is a valid key, 4096 is not. */
	for (size_t i = 0; i < 4095; i += 2)
		memcpy(big + i, "/d", 2);
	big[4094] = 'd';
	big[4095] = '\0';
	snprintf(json, sizeof(json), "{\"%s\": {}}", big);
	pfs_map_unref(parse_ok(json));
	big[4095] = 'd';
	big[4096] = '\0';
	snprintf(json, sizeof(json), "{\"%s\": {}}", big);
	parse_bad(json, "\": longer than 4095 bytes", "key \"/d/d");
	/* The long key is cut but the reason still fits on the line. */
	parse_bad(json, "...\": longer than 4095 bytes", NULL);
}

static void t_key_quoting(void **s)
{
	(void)s;
	parse_bad("{\"a\\n\\\"b\": {}}", "key \"a\\x0a\\\"b\": not absolute", NULL);
	parse_bad("{\"/\\u00e9/\": {}}", "key \"/\xc3\xa9/\": trailing slash", NULL);
}

static void t_bad_values(void **s)
{
	(void)s;
	parse_bad("{\"/a\": \"x\"}", "key \"/a\": value is not an object", NULL);
	parse_bad("{\"/a\": null}", "key \"/a\": value is not an object", NULL);
	parse_bad("{\"/a\": {\"path\": 1}}", "key \"/a\": \"path\" must be a string", NULL);
	parse_bad("{\"/a\": {\"path\": \"/b\"}}", "key \"/a\": \"path\" differs from the key", NULL);
	parse_bad("{\"/a\": {\"path\": \"/a/\"}}", "\"path\" differs from the key", NULL);
	parse_bad("{\"/a\": {\"path\": \"/a\\u0000\"}}", "\"path\" differs from the key", NULL);
	parse_bad("{\"/a\": {\"path\": \"\"}}", "\"path\" differs from the key", NULL);
	parse_bad("{\"/a\": {\"target\": 1}}", "key \"/a\": \"target\" must be a string", NULL);
	parse_bad("{\"/a\": {\"target\": null}}", "key \"/a\": \"target\" must be a string", NULL);
	parse_bad("{\"/a\": {\"target\": \"\"}}", "key \"/a\": \"target\" is empty", NULL);
	parse_bad("{\"/a\": {\"target\": \"x\\u0000y\"}}", "key \"/a\": \"target\" contains a NUL byte",
		  NULL);
	parse_bad("{\"/a\": {\"target\": \"../x\"}}", "key \"/a\": \"target\" \"..\" escapes the source",
		  NULL);
	parse_bad("{\"/a\": {\"target\": \"..\"}}", "\"target\" \"..\" escapes the source", NULL);
	parse_bad("{\"/a\": {\"target\": \"b/..\"}}", "\"target\" \"..\" escapes the source", NULL);
	parse_bad("{\"/a\": {\"target\": \"b//../../c\"}}", "\"target\" \"..\" escapes the source", NULL);
	parse_bad("{\"/a\": {\"readonly\": \"yes\"}}", "key \"/a\": \"readonly\" must be a boolean", NULL);
	parse_bad("{\"/a\": {\"readonly\": 1}}", "\"readonly\" must be a boolean", NULL);
	parse_bad("{\"/a\": {\"readonly\": null}}", "\"readonly\" must be a boolean", NULL);
}

static void t_target_too_long(void **s)
{
	char *json = malloc(4200);
	int n;

	(void)s;
	if (!json) { /* cmocka's fail() returns as far as the compiler knows */
		fail();
		return;
	}
	n = sprintf(json, "{\"/a\": {\"target\": \"/");
	memset(json + n, 't', 4095);
	strcpy(json + n + 4094, "\"}}"); /* "/" + 4094 bytes: the limit */
	pfs_map_unref(parse_ok(json));
	memset(json + n, 't', 4095);
	strcpy(json + n + 4095, "\"}}");
	parse_bad(json, "key \"/a\": \"target\" longer than 4095 bytes", NULL);
	free(json);
}

static void t_bad_numbers(void **s)
{
	static const char *const modes[] = {"\"0o644\"", "\"\"", "\"8\"", "\"0x1a4\"", "\" 644\"",
					    "\"644 \"", "\"10000\"", "\"-1\"", "4096", "-1",
					    "420.0", "true", "null", "\"06\\u00004\""};
	static const char *const ids[] = {"-1", "4294967295", "\"0\"", "1.0", "true", "null",
					  "99999999999"};
	char json[128];

	(void)s;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		snprintf(json, sizeof(json), "{\"/a\": {\"mode\": %s}}", modes[i]);
		parse_bad(json, "key \"/a\": \"mode\" must be an octal string or an integer 0..07777",
			  NULL);
	}
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		snprintf(json, sizeof(json), "{\"/a\": {\"uid\": %s}}", ids[i]);
		parse_bad(json, "key \"/a\": \"uid\" must be an integer 0..4294967294", NULL);
		snprintf(json, sizeof(json), "{\"/a\": {\"gid\": %s}}", ids[i]);
		parse_bad(json, "key \"/a\": \"gid\" must be an integer 0..4294967294", NULL);
	}
}

static void t_first_error_wins(void **s)
{
	(void)s;
	/* Keys are checked in file order, and the key before its value. */
	parse_bad("{\"/ok\": {}, \"/b/\": {\"mode\": 9}, \"c\": {}}", "key \"/b/\": trailing slash",
		  NULL);
}

static const struct pfs_map_entry *exact(const struct pfs_map *m, const char *path)
{
	struct pfs_map_res r;

	pfs_map_resolve(m, path, &r);
	assert_non_null(r.entry);
	assert_true(r.exact);
	assert_string_equal(r.entry->key, path);
	return r.entry;
}

static void t_values(void **s)
{
	struct pfs_map *m = parse_ok(
		"{\"/a\": {\"path\": \"/a\", \"target\": \"rel/x\", \"mode\": \"0644\", \"uid\": 0,"
		"         \"gid\": 4294967294, \"readonly\": true, \"comment\": [1, {}]},"
		" \"/b\": {\"target\": \"/abs/../y\", \"mode\": \"755\", \"readonly\": false},"
		" \"/c\": {\"target\": \"./z/..z\", \"mode\": 420, \"uid\": 1000},"
		" \"/d\": {\"mode\": \"7777\"}, \"/e\": {\"mode\": 0}, \"/f\": {\"mode\": \"00\"}}");
	const struct pfs_map_entry *e;

	(void)s;
	assert_int_equal(pfs_map_count(m), 6);
	e = exact(m, "/a");
	assert_string_equal(e->target, "rel/x");
	assert_true(e->has_mode && e->has_uid && e->has_gid && e->readonly);
	assert_int_equal(e->mode, 0644);
	assert_int_equal(e->uid, 0);
	assert_int_equal(e->gid, 4294967294u);
	e = exact(m, "/b");
	assert_string_equal(e->target, "/abs/../y");
	assert_true(e->has_mode && !e->has_uid && !e->has_gid && !e->readonly);
	assert_int_equal(e->mode, 0755);
	e = exact(m, "/c");
	assert_string_equal(e->target, "./z/..z");
	assert_int_equal(e->mode, 0644);
	assert_true(e->has_uid);
	assert_int_equal(e->uid, 1000);
	e = exact(m, "/d");
	assert_null(e->target);
	assert_int_equal(e->mode, 07777);
	e = exact(m, "/e");
	assert_true(e->has_mode);
	assert_int_equal(e->mode, 0);
	e = exact(m, "/f");
	assert_true(e->has_mode);
	assert_int_equal(e->mode, 0);
	pfs_map_unref(m);
}

static void t_empty_and_refs(void **s)
{
	struct pfs_map *m = parse_ok("{}");
	struct pfs_map_res r;

	(void)s;
	assert_int_equal(pfs_map_count(m), 0);
	assert_int_equal(pfs_map_count(NULL), 0);
	pfs_map_resolve(m, "/", &r);
	assert_null(r.entry);
	assert_false(r.parent_of_keys);
	assert_ptr_equal(pfs_map_ref(m), m);
	pfs_map_unref(m);
	pfs_map_unref(m);
	pfs_map_unref(NULL);
	assert_null(pfs_map_ref(NULL));
	/* A NULL buffer is the empty document, not a crash. */
	parse_bad_len(NULL, 0, "line 1, column 0: ", NULL);
}

static const char passthrough[] =
	"{\"/example.txt\": {\"path\": \"/example.txt\", \"target\": \"/underlying_fs/real_example.txt\"},"
	" \"/example2.txt\": {\"path\": \"/example2.txt\"},"
	" \"/some/dir\": {\"path\": \"/some/dir\", \"target\": \"/underlying_fs/some/dir\"}}";

static void t_resolve_passthrough(void **s)
{
	struct pfs_map *m = parse_ok(passthrough);
	struct pfs_map_res r;
	const char *p;

	(void)s;
	assert_int_equal(pfs_map_count(m), 3);

	pfs_map_resolve(m, "/example.txt", &r);
	assert_non_null(r.entry);
	assert_string_equal(r.entry->target, "/underlying_fs/real_example.txt");
	assert_true(r.exact);
	assert_false(r.hidden || r.readonly || r.parent_of_keys);
	assert_string_equal(r.rest, "");

	pfs_map_resolve(m, "/example2.txt", &r);
	assert_true(r.hidden && r.exact);
	assert_string_equal(r.entry->key, "/example2.txt");
	assert_null(r.entry->target);

	p = "/some/dir/x/y";
	pfs_map_resolve(m, p, &r);
	assert_string_equal(r.entry->key, "/some/dir");
	assert_false(r.exact || r.hidden);
	assert_string_equal(r.rest, "x/y");
	assert_ptr_equal(r.rest, p + strlen("/some/dir/"));

	pfs_map_resolve(m, "/some/dir", &r);
	assert_true(r.exact);
	assert_false(r.parent_of_keys);
	assert_string_equal(r.rest, "");

	/* A virtual parent: not mapped itself, but keys lie beneath it. */
	pfs_map_resolve(m, "/some", &r);
	assert_null(r.entry);
	assert_false(r.exact || r.hidden);
	assert_true(r.parent_of_keys);
	assert_string_equal(r.rest, "");

	pfs_map_resolve(m, "/", &r);
	assert_null(r.entry);
	assert_true(r.parent_of_keys);

	/* Near misses fall through. */
	pfs_map_resolve(m, "/some/dirt", &r);
	assert_null(r.entry);
	assert_false(r.parent_of_keys);
	pfs_map_resolve(m, "/example.txt.bak", &r);
	assert_null(r.entry);
	pfs_map_resolve(m, "/other", &r);
	assert_null(r.entry);
	assert_false(r.hidden || r.readonly || r.parent_of_keys);
	assert_non_null(r.rest);
	pfs_map_unref(m);
}

static void t_resolve_deepest(void **s)
{
	struct pfs_map *m = parse_ok("{\"/a\": {\"target\": \"/t1\"}, \"/a/b\": {\"target\": \"/t2\"},"
				     " \"/a/b/c/d\": {\"target\": \"/t3\"}}");
	struct pfs_map_res r;

	(void)s;
	pfs_map_resolve(m, "/a/b/c", &r);
	assert_string_equal(r.entry->key, "/a/b");
	assert_string_equal(r.rest, "c");
	assert_true(r.parent_of_keys);
	pfs_map_resolve(m, "/a/b/c/e", &r);
	assert_string_equal(r.entry->key, "/a/b");
	assert_string_equal(r.rest, "c/e");
	pfs_map_resolve(m, "/a/b/c/d/e/f", &r);
	assert_string_equal(r.entry->key, "/a/b/c/d");
	assert_string_equal(r.rest, "e/f");
	pfs_map_resolve(m, "/a/x", &r);
	assert_string_equal(r.entry->key, "/a");
	assert_string_equal(r.rest, "x");
	pfs_map_resolve(m, "/a", &r);
	assert_true(r.exact && r.parent_of_keys);
	pfs_map_unref(m);
}

static void t_resolve_hidden(void **s)
{
	struct pfs_map *m = parse_ok("{\"/h\": {}, \"/h/deep\": {\"target\": \"/t\"}, \"/h/deep/x\": {},"
				     " \"/g\": {\"target\": \"/g\"}, \"/g/hid\": {\"mode\": \"0600\"}}");
	struct pfs_map_res r;

	(void)s;
	pfs_map_resolve(m, "/h", &r);
	assert_true(r.hidden && r.exact && r.parent_of_keys);
	assert_string_equal(r.entry->key, "/h");
	/* A key beneath a hidden one is hidden too: the topmost hider decides. */
	pfs_map_resolve(m, "/h/deep", &r);
	assert_true(r.hidden);
	assert_false(r.exact);
	assert_string_equal(r.entry->key, "/h");
	assert_string_equal(r.rest, "deep");
	assert_true(r.parent_of_keys);
	pfs_map_resolve(m, "/h/deep/x/y", &r);
	assert_true(r.hidden);
	assert_string_equal(r.entry->key, "/h");
	pfs_map_resolve(m, "/h/other", &r);
	assert_true(r.hidden);
	assert_false(r.parent_of_keys);
	/* Below a graft, an entry without target (only permissions) hides. */
	pfs_map_resolve(m, "/g/hid/z", &r);
	assert_true(r.hidden);
	assert_string_equal(r.entry->key, "/g/hid");
	assert_string_equal(r.rest, "z");
	pfs_map_resolve(m, "/g/vis", &r);
	assert_false(r.hidden);
	assert_string_equal(r.entry->key, "/g");
	pfs_map_unref(m);
}

static void t_resolve_readonly(void **s)
{
	struct pfs_map *m = parse_ok("{\"/r\": {\"target\": \"/t\", \"readonly\": true},"
				     " \"/r/s\": {\"target\": \"/u\"},"
				     " \"/w\": {\"target\": \"/w\"}, \"/w/ro\": {\"target\": \"/x\", \"readonly\": true},"
				     " \"/v/deep\": {\"target\": \"/y\", \"readonly\": true}}");
	struct pfs_map_res r;

	(void)s;
	pfs_map_resolve(m, "/r", &r);
	assert_true(r.readonly);
	pfs_map_resolve(m, "/r/s/t", &r);
	assert_true(r.readonly);
	assert_string_equal(r.entry->key, "/r/s");
	pfs_map_resolve(m, "/r/other", &r);
	assert_true(r.readonly);
	pfs_map_resolve(m, "/w", &r);
	assert_false(r.readonly);
	pfs_map_resolve(m, "/w/x", &r);
	assert_false(r.readonly);
	pfs_map_resolve(m, "/w/ro", &r);
	assert_true(r.readonly);
	pfs_map_resolve(m, "/w/ro/x", &r);
	assert_true(r.readonly);
	/* A readonly key beneath does not make its parent readonly. */
	pfs_map_resolve(m, "/v", &r);
	assert_false(r.readonly);
	assert_true(r.parent_of_keys);
	pfs_map_unref(m);
}

static void t_resolve_root(void **s)
{
	struct pfs_map *m = parse_ok("{\"/\": {\"target\": \"/base\", \"readonly\": true},"
				     " \"/x\": {}, \"/y/z\": {\"target\": \"other\"}}");
	struct pfs_map_res r;
	const char *p;

	(void)s;
	pfs_map_resolve(m, "/", &r);
	assert_true(r.exact && r.readonly && r.parent_of_keys);
	assert_string_equal(r.entry->key, "/");
	assert_string_equal(r.rest, "");
	p = "/q/w";
	pfs_map_resolve(m, p, &r);
	assert_string_equal(r.entry->key, "/");
	assert_false(r.exact);
	assert_ptr_equal(r.rest, p + 1);
	assert_true(r.readonly);
	pfs_map_resolve(m, "/x/q", &r);
	assert_true(r.hidden);
	assert_string_equal(r.entry->key, "/x");
	pfs_map_resolve(m, "/y", &r);
	assert_string_equal(r.entry->key, "/");
	assert_string_equal(r.rest, "y");
	assert_true(r.parent_of_keys);
	pfs_map_resolve(m, "/y/z/1", &r);
	assert_string_equal(r.entry->key, "/y/z");
	assert_string_equal(r.rest, "1");
	pfs_map_unref(m);

	/* A root entry without target hides everything, including deeper keys. */
	m = parse_ok("{\"/\": {}, \"/a\": {\"target\": \"/t\"}}");
	pfs_map_resolve(m, "/a", &r);
	assert_true(r.hidden);
	assert_string_equal(r.entry->key, "/");
	assert_string_equal(r.rest, "a");
	pfs_map_resolve(m, "/", &r);
	assert_true(r.hidden && r.exact && r.parent_of_keys);
	pfs_map_unref(m);

	/* Only the root key: nothing lies beneath "/". */
	m = parse_ok("{\"/\": {\"target\": \"/t\"}}");
	pfs_map_resolve(m, "/", &r);
	assert_true(r.exact);
	assert_false(r.parent_of_keys);
	pfs_map_unref(m);
}

static void t_resolve_odd_paths(void **s)
{
	struct pfs_map *m = parse_ok(passthrough);
	struct pfs_map_res r;

	(void)s;
	/* Callers should normalise, but a slip must not read out of bounds. */
	pfs_map_resolve(m, "//some///dir//x/", &r);
	assert_string_equal(r.entry->key, "/some/dir");
	assert_string_equal(r.rest, "x/");
	pfs_map_resolve(m, "some/dir", &r);
	assert_null(r.entry);
	pfs_map_resolve(m, "", &r);
	assert_null(r.entry);
	pfs_map_resolve(m, NULL, &r);
	assert_null(r.entry);
	assert_non_null(r.rest);
	pfs_map_resolve(NULL, "/some/dir", &r);
	assert_null(r.entry);
	assert_false(r.parent_of_keys);
	pfs_map_unref(m);
}

struct kids {
	char names[16][32];
	bool hidden[16];
	const struct pfs_map_entry *exact[16];
	int n, stop_at;
};

static int on_child(const char *name, bool hidden, const struct pfs_map_entry *e, void *arg)
{
	struct kids *k = arg;

	assert_true(k->n < 16);
	snprintf(k->names[k->n], sizeof(k->names[0]), "%s", name);
	k->hidden[k->n] = hidden;
	k->exact[k->n] = e;
	k->n++;
	return k->n == k->stop_at ? 7 : 0;
}

static void t_children(void **s)
{
	struct pfs_map *m = parse_ok("{\"/d/b\": {\"target\": \"/b\"}, \"/d/a\": {},"
				     " \"/d/c/deep\": {\"target\": \"/x\"}, \"/d/a-b\": {\"target\": \"/y\"},"
				     " \"/d/a/x\": {\"target\": \"/z\"}, \"/d/\\u00e9\": {\"target\": \"/e\"},"
				     " \"/d/Z\": {\"target\": \"/Z\"}, \"/top\": {\"target\": \"/top\"}}");
	struct kids k = {0};

	(void)s;
	assert_int_equal(pfs_map_children(m, "/d", on_child, &k), 0);
	assert_int_equal(k.n, 6);
	/* strcmp order, so bytes >= 0x80 come last. */
	assert_string_equal(k.names[0], "Z");
	assert_string_equal(k.names[1], "a");
	assert_string_equal(k.names[2], "a-b");
	assert_string_equal(k.names[3], "b");
	assert_string_equal(k.names[4], "c");
	assert_string_equal(k.names[5], "\xc3\xa9");
	assert_true(k.hidden[1]);
	assert_string_equal(k.exact[1]->key, "/d/a");
	assert_false(k.hidden[2] || k.hidden[3] || k.hidden[4]);
	assert_string_equal(k.exact[3]->target, "/b");
	assert_null(k.exact[4]); /* virtual parent of /d/c/deep */

	memset(&k, 0, sizeof(k));
	assert_int_equal(pfs_map_children(m, "/", on_child, &k), 0);
	assert_int_equal(k.n, 2);
	assert_string_equal(k.names[0], "d");
	assert_null(k.exact[0]);
	assert_string_equal(k.names[1], "top");
	assert_non_null(k.exact[1]);

	memset(&k, 0, sizeof(k));
	assert_int_equal(pfs_map_children(m, "/d/c", on_child, &k), 0);
	assert_int_equal(k.n, 1);
	assert_string_equal(k.names[0], "deep");

	/* Hidden directories still report what lies under them. */
	memset(&k, 0, sizeof(k));
	assert_int_equal(pfs_map_children(m, "/d/a", on_child, &k), 0);
	assert_int_equal(k.n, 1);
	assert_string_equal(k.names[0], "x");

	memset(&k, 0, sizeof(k));
	assert_int_equal(pfs_map_children(m, "/d/b", on_child, &k), 0);
	assert_int_equal(pfs_map_children(m, "/nope", on_child, &k), 0);
	assert_int_equal(pfs_map_children(m, "/d/c/deep/more", on_child, &k), 0);
	assert_int_equal(pfs_map_children(NULL, "/", on_child, &k), 0);
	assert_int_equal(k.n, 0);

	k.stop_at = 2;
	assert_int_equal(pfs_map_children(m, "/d", on_child, &k), 7);
	assert_int_equal(k.n, 2);
	pfs_map_unref(m);
}

struct keys {
	char list[512];
	int stop_at, n;
};

static int on_key(const char *key, void *arg)
{
	struct keys *k = arg;
	size_t l = strlen(k->list);

	snprintf(k->list + l, sizeof(k->list) - l, "%s%s", l ? " " : "", key);
	return ++k->n == k->stop_at ? 9 : 0;
}

static void diff_is(const char *a, const char *b, const char *want)
{
	struct pfs_map *ma = a ? parse_ok(a) : NULL, *mb = b ? parse_ok(b) : NULL;
	struct keys k = {0};

	assert_int_equal(pfs_map_diff(ma, mb, on_key, &k), 0);
	if (strcmp(k.list, want) != 0)
		fail_msg("diff %s -> %s: got \"%s\", want \"%s\"", a, b, k.list, want);
	pfs_map_unref(ma);
	pfs_map_unref(mb);
}

static void t_diff(void **s)
{
	static const char *const variants[] = {
		"{\"target\": \"/u\", \"mode\": \"644\", \"uid\": 1, \"gid\": 2}",
		"{\"mode\": \"644\", \"uid\": 1, \"gid\": 2}",
		"{\"target\": \"/t\", \"uid\": 1, \"gid\": 2}",
		"{\"target\": \"/t\", \"mode\": \"600\", \"uid\": 1, \"gid\": 2}",
		"{\"target\": \"/t\", \"mode\": \"644\", \"gid\": 2}",
		"{\"target\": \"/t\", \"mode\": \"644\", \"uid\": 3, \"gid\": 2}",
		"{\"target\": \"/t\", \"mode\": \"644\", \"uid\": 1}",
		"{\"target\": \"/t\", \"mode\": \"644\", \"uid\": 1, \"gid\": 3}",
		"{\"target\": \"/t\", \"mode\": \"644\", \"uid\": 1, \"gid\": 2, \"readonly\": true}",
	};
	const char *base = "{\"/k\": {\"target\": \"/t\", \"mode\": \"644\", \"uid\": 1, \"gid\": 2},"
			   " \"/same\": {}}";
	char other[256];

	(void)s;
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		snprintf(other, sizeof(other), "{\"/same\": {}, \"/k\": %s}", variants[i]);
		diff_is(base, other, "/k");
		diff_is(other, base, "/k");
	}
	/* Same values written differently are the same entry. */
	diff_is(base, "{\"/same\": {\"path\": \"/same\", \"x\": 1}, \"/k\": {\"target\": \"/t\","
		      " \"mode\": 420, \"uid\": 1, \"gid\": 2, \"readonly\": false}}", "");
	diff_is(base, base, "");
	diff_is(NULL, NULL, "");
	diff_is("{}", NULL, "");
	diff_is(NULL, base, "/k /same");
	diff_is(base, NULL, "/k /same");
	diff_is("{\"/a\": {}, \"/b\": {}, \"/c\": {\"mode\": 1}}",
		"{\"/a\": {}, \"/c\": {\"mode\": 2}, \"/d\": {}}", "/b /c /d");
	/* Parents come right before their subtrees. */
	diff_is(NULL, "{\"/a-b\": {}, \"/a/b\": {}, \"/a\": {}, \"/\": {}, \"/a/b/c\": {}}",
		"/ /a /a/b /a/b/c /a-b");
}

static void t_diff_same_and_stop(void **s)
{
	struct pfs_map *m = parse_ok(passthrough);
	struct keys k = {.stop_at = 2};

	(void)s;
	assert_int_equal(pfs_map_diff(m, m, on_key, &k), 0);
	assert_int_equal(k.n, 0);
	assert_int_equal(pfs_map_diff(NULL, m, on_key, &k), 9);
	assert_int_equal(k.n, 2);
	assert_string_equal(k.list, "/example.txt /example2.txt");
	pfs_map_unref(m);
}

static void t_hash(void **s)
{
	(void)s;
	assert_true(pfs_map_hash("") == 0xcbf29ce484222325ull);
	assert_true(pfs_map_hash("a") == 0xaf63dc4c8601ec8cull);
	assert_true(pfs_map_hash("foobar") == 0x85944171f73967e8ull);
	assert_true(pfs_map_hash("/a") != pfs_map_hash("/b"));
	assert_true(pfs_map_hash(NULL) != 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_syntax),
		cmocka_unit_test(t_syntax_error_is_one_line),
		cmocka_unit_test(t_top_level),
		cmocka_unit_test(t_bad_keys),
		cmocka_unit_test(t_key_quoting),
		cmocka_unit_test(t_bad_values),
		cmocka_unit_test(t_target_too_long),
		cmocka_unit_test(t_bad_numbers),
		cmocka_unit_test(t_first_error_wins),
		cmocka_unit_test(t_values),
		cmocka_unit_test(t_empty_and_refs),
		cmocka_unit_test(t_resolve_passthrough),
		cmocka_unit_test(t_resolve_deepest),
		cmocka_unit_test(t_resolve_hidden),
		cmocka_unit_test(t_resolve_readonly),
		cmocka_unit_test(t_resolve_root),
		cmocka_unit_test(t_resolve_odd_paths),
		cmocka_unit_test(t_children),
		cmocka_unit_test(t_diff),
		cmocka_unit_test(t_diff_same_and_stop),
		cmocka_unit_test(t_hash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
