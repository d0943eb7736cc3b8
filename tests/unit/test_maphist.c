/* maphist: the table's text as the history keeps it, and view paths to
 * SOURCE's and back (docs/HISTORY.md, "With a mapping table"). Expected
 * values follow README's "Mappings" rules: an exact key wins, else the
 * deepest key above grafts its subtree, else the path is SOURCE's own; no
 * target hides; a relative target is beneath SOURCE, an absolute one
 * under the mount point means SOURCE there. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map/maphist.h"

#define SRC "/srv/app"
#define MNT "/srv/view"

static struct pfs_map *parse(const char *json)
{
	char err[PFS_MAP_ERRLEN];
	struct pfs_map *m = NULL;

	if (pfs_map_parse(json, strlen(json), &m, err) != 0)
		fail_msg("parse of %s: %s", json, err);
	return m;
}

static const char TABLE[] =
	"{\"/config.json\": {\"target\": \"conf/app.json\", \"mode\": \"0440\", \"uid\": 0},"
	" \"/data\": {\"target\": \"./datasets//2026/\", \"readonly\": true},"
	" \"/data/raw\": {\"target\": \"/srv/view/raw\"},"
	" \"/tools/bin/cc\": {\"target\": \"/usr/bin/gcc\"},"
	" \"/in\": {\"target\": \"/srv/app/inner\"},"
	" \"/datasets\": {}, \"/secrets\": {}}";

static void to_source(const struct pfs_map *m, const char *v, int want_rc, const char *want,
		      bool want_virt)
{
	char out[4096];
	bool virt = !want_virt;
	int rc = pfs_map_to_source(m, v, SRC, MNT, out, sizeof(out), &virt);

	if (rc != want_rc)
		fail_msg("%s: rc %d, want %d", v, rc, want_rc);
	if (rc >= 0 && strcmp(out, want) != 0)
		fail_msg("%s: %s, want %s", v, out, want);
	if (virt != want_virt)
		fail_msg("%s: virt %d, want %d", v, virt, want_virt);
}

static void t_to_source(void **s)
{
	struct pfs_map *m = parse(TABLE);

	(void)s;
	to_source(m, "/config.json", 1, "conf/app.json", false);
	to_source(m, "/data", 1, "datasets/2026", true);          /* keys beneath it */
	to_source(m, "/data/x/y", 1, "datasets/2026/x/y", false);
	to_source(m, "/data/raw/f", 1, "raw/f", false);           /* under the mount point */
	to_source(m, "/in/z", 1, "inner/z", false);               /* absolute under SOURCE */
	to_source(m, "/tools/bin/cc", 0, "/usr/bin/gcc", false);  /* outside SOURCE */
	to_source(m, "/tools", 1, "tools", true);                 /* a synthetic parent */
	to_source(m, "/plain/f", 1, "plain/f", false);
	to_source(m, "/", 1, "", true);
	to_source(m, "/secrets/k", -ENOENT, "", false);
	to_source(m, "/datasets", -ENOENT, "", false);
	to_source(NULL, "/a/b", 1, "a/b", false);
	pfs_map_unref(m);
	/* a ".." above SOURCE's root in an absolute target under it */
	m = parse("{\"/up\": {\"target\": \"/srv/app/../other\"}}");
	to_source(m, "/up/f", 0, "/srv/other/f", false);
	pfs_map_unref(m);
}

static void to_view(const struct pfs_map *m, const char *sp, int want_rc, const char *want)
{
	char out[4096];
	int rc = pfs_map_to_view(m, sp, SRC, MNT, out, sizeof(out));

	if (rc != want_rc || strcmp(out, want) != 0)
		fail_msg("%s: %d %s, want %d %s", sp, rc, out, want_rc, want);
}

static void t_to_view(void **s)
{
	struct pfs_map *m = parse(TABLE);

	(void)s;
	to_view(m, "conf/app.json", 1, "/config.json");  /* the key, not /conf/app.json */
	to_view(m, "conf/other", 1, "/conf/other");
	to_view(m, "datasets/2026/x", 1, "/data/x");    /* its own path is hidden */
	to_view(m, "datasets/2026", 1, "/data");
	to_view(m, "raw/f", 1, "/data/raw/f");
	to_view(m, "inner", 1, "/in");
	to_view(m, "/usr/bin/gcc", 1, "/tools/bin/cc");
	to_view(m, "/etc/passwd", 0, "/etc/passwd");     /* shown nowhere */
	to_view(m, "datasets/2025/x", 0, "datasets/2025/x");
	to_view(m, "secrets/k", 0, "secrets/k");
	to_view(m, "", 1, "/");
	to_view(NULL, "a/b", 1, "/a/b");
	pfs_map_unref(m);
	/* a deeper key covers the graft's path there */
	m = parse("{\"/d\": {\"target\": \"t\"}, \"/d/x\": {\"target\": \"u\"}}");
	to_view(m, "t/x/f", 1, "/t/x/f");
	to_view(m, "t/y", 1, "/d/y");
	to_view(m, "u/f", 1, "/d/x/f");
	pfs_map_unref(m);
	/* the root grafted: nothing is its own path */
	m = parse("{\"/\": {\"target\": \"sub\"}}");
	to_view(m, "sub/f", 1, "/f");
	to_view(m, "f", 0, "f");
	pfs_map_unref(m);
}

static void t_dump_round_trip(void **s)
{
	struct pfs_map *m = parse(TABLE), *m2;
	char *j = pfs_map_dump(m), *j2;

	(void)s;
	assert_non_null(j);
	m2 = parse(j);
	j2 = pfs_map_dump(m2);
	assert_string_equal(j, j2);
	assert_int_equal(pfs_map_count(m), pfs_map_count(m2));
	assert_non_null(strstr(j, "\"/secrets\":{}"));
	assert_non_null(strstr(j, "\"mode\":\"0440\""));
	assert_non_null(strstr(j, "\"readonly\":true"));
	free(j);
	free(j2);
	pfs_map_unref(m);
	pfs_map_unref(m2);
	j = pfs_map_dump(NULL);
	assert_string_equal(j, "{}");
	free(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_to_source),
		cmocka_unit_test(t_to_view),
		cmocka_unit_test(t_dump_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
