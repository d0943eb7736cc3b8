#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/idmap.h"
#include "util/util.h"
#include "util/xblob.h"

static void t_errname(void **s)
{
	char b[16];

	(void)s;
	assert_string_equal(pfs_errname(ENOENT, b, sizeof(b)), "ENOENT");
	assert_string_equal(pfs_errname(EROFS, b, sizeof(b)), "EROFS");
	assert_string_equal(pfs_errname(4095, b, sizeof(b)), "E4095");
}

static void t_parse_long(void **s)
{
	long v;

	(void)s;
	assert_int_equal(pfs_parse_long("16", 1, 1024, &v), 0);
	assert_int_equal(v, 16);
	assert_int_equal(pfs_parse_long("0", 1, 1024, &v), -EINVAL);
	assert_int_equal(pfs_parse_long("2000", 1, 1024, &v), -EINVAL);
	assert_int_equal(pfs_parse_long("12x", 1, 1024, &v), -EINVAL);
	assert_int_equal(pfs_parse_long("", 1, 1024, &v), -EINVAL);
	assert_int_equal(pfs_parse_long(" 3", 1, 1024, &v), -EINVAL);
	assert_int_equal(pfs_parse_long(NULL, 1, 1024, &v), -EINVAL);
}

static void t_parse_seconds(void **s)
{
	double v;

	(void)s;
	assert_int_equal(pfs_parse_seconds("0", &v), 0);
	assert_true(v == 0.0);
	assert_int_equal(pfs_parse_seconds("0.5", &v), 0);
	assert_true(v == 0.5);
	assert_int_equal(pfs_parse_seconds("-1", &v), -EINVAL);
	assert_int_equal(pfs_parse_seconds("nan", &v), -EINVAL);
	assert_int_equal(pfs_parse_seconds("1s", &v), -EINVAL);
	assert_int_equal(pfs_parse_seconds("1e12", &v), -EINVAL);
}

static void t_fmt_time(void **s)
{
	struct timespec ts = {.tv_sec = 1795270898, .tv_nsec = 123456789};
	char b[40];

	(void)s;
	pfs_fmt_time(&ts, b, sizeof(b));
	assert_string_equal(b, "2026-11-21T14:21:38.123456Z");
}

static const char mountinfo[] =
	"22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
	"40 22 0:50 / /tmp/a\\040b rw,nosuid shared:20 - fuse.prismfs /src\\040dir rw,user_id=0\n"
	"41 22 0:51 / /tmp/x rw - tmpfs tmpfs rw\n"
	"42 41 0:52 / /tmp/x rw master:3 - fuse.prismfs /tmp/x rw\n";

static void t_mountinfo(void **s)
{
	struct pfs_mntent e;
	FILE *f;

	(void)s;
	f = fmemopen((void *)mountinfo, sizeof(mountinfo) - 1, "r");
	assert_int_equal(pfs_mountinfo_find(f, "/tmp/a b", &e), 0);
	fclose(f);
	assert_int_equal(e.major, 0);
	assert_int_equal(e.minor, 50);
	assert_string_equal(e.fstype, "fuse.prismfs");
	assert_string_equal(e.source, "/src dir");

	/* Stacked mounts: the last listed is the one on top. */
	f = fmemopen((void *)mountinfo, sizeof(mountinfo) - 1, "r");
	assert_int_equal(pfs_mountinfo_find(f, "/tmp/x", &e), 0);
	fclose(f);
	assert_int_equal(e.minor, 52);
	assert_string_equal(e.fstype, "fuse.prismfs");

	f = fmemopen((void *)mountinfo, sizeof(mountinfo) - 1, "r");
	assert_int_equal(pfs_mountinfo_find(f, "/tmp/none", &e), -ENOENT);
	fclose(f);
}

static void t_mountinfo_malformed(void **s)
{
	static const char bad[] = "22 1 254:0 / / rw,relatime shared:1 ext4 /dev/vda rw\n";
	struct pfs_mntent e;
	FILE *f = fmemopen((void *)bad, sizeof(bad) - 1, "r");

	(void)s;
	assert_int_equal(pfs_mountinfo_find(f, "/", &e), -EIO);
	fclose(f);
}

static void t_valid_name(void **s)
{
	char longname[300];

	(void)s;
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_true(pfs_valid_name("a"));
	assert_true(pfs_valid_name("..."));
	assert_true(pfs_valid_name(".hidden"));
	assert_false(pfs_valid_name(""));
	assert_false(pfs_valid_name("."));
	assert_false(pfs_valid_name(".."));
	assert_false(pfs_valid_name("a/b"));
	assert_false(pfs_valid_name(longname));
	assert_false(pfs_valid_name(NULL));
}

static void t_parse_size(void **s)
{
	size_t v;

	(void)s;
	assert_int_equal(pfs_parse_size("0", &v), 0);
	assert_true(v == 0);
	assert_int_equal(pfs_parse_size("4096", &v), 0);
	assert_true(v == 4096);
	assert_int_equal(pfs_parse_size("3k", &v), 0);
	assert_true(v == 3072);
	assert_int_equal(pfs_parse_size("64M", &v), 0);
	assert_true(v == (size_t)64 << 20);
	assert_int_equal(pfs_parse_size("2G", &v), 0);
	assert_true(v == (size_t)2 << 30);
	assert_int_equal(pfs_parse_size("", &v), -EINVAL);
	assert_int_equal(pfs_parse_size(NULL, &v), -EINVAL);
	assert_int_equal(pfs_parse_size("-1", &v), -EINVAL);
	assert_int_equal(pfs_parse_size(" 1", &v), -EINVAL);
	assert_int_equal(pfs_parse_size("1MB", &v), -EINVAL);
	assert_int_equal(pfs_parse_size("1T", &v), -EINVAL);
	assert_int_equal(pfs_parse_size("99999999999999999999", &v), -EINVAL);
	assert_int_equal(pfs_parse_size("18014398509481984G", &v), -EINVAL);
}

static void t_path_join(void **s)
{
	char *p;

	(void)s;
	p = pfs_path_join("/", "a");
	assert_string_equal(p, "/a");
	free(p);
	p = pfs_path_join("/a/b", "c");
	assert_string_equal(p, "/a/b/c");
	free(p);
}

/* fuse-overlayfs's uidmapping=: CONTAINERID:HOSTID:SIZE, the stored id first. */
static void t_idmap(void **s)
{
	static struct pfs_idmap m;
	char err[128];
	uint32_t id;
	static const char *const bad[] = {
		"", "x:1:1", "0:1000", "0:1000:0", "0:1000:1:", "0:1000:1:0:2000:1",
		"0:1000:1:5:1000:2", "4294967295:0:1", "0:4294967290:10", "0:1:4294967296",
		"-1:0:1", "0:1000:1,1:2000:1", " 0:1:1",
	};

	(void)s;
	assert_int_equal(pfs_idmap_parse("0:1000:1:1:110000:65536", &m, err, sizeof(err)), 0);
	assert_int_equal(m.n, 2);
	assert_true(pfs_idmap_shown(&m, 0, &id) && id == 1000);
	assert_true(pfs_idmap_shown(&m, 65536, &id) && id == 175535);
	assert_false(pfs_idmap_shown(&m, 65537, &id));
	assert_true(pfs_idmap_stored(&m, 110005, &id) && id == 6);
	assert_true(pfs_idmap_stored(&m, 1000, &id) && id == 0);
	assert_false(pfs_idmap_stored(&m, 999, &id));
	assert_false(pfs_idmap_stored(&m, 0, &id));
	/* The last id there is, and adjacent ranges. */
	assert_int_equal(pfs_idmap_parse("4294967294:0:1:0:1:5", &m, err, sizeof(err)), 0);
	assert_true(pfs_idmap_shown(&m, 4294967294u, &id) && id == 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(pfs_idmap_parse(bad[i], &m, err, sizeof(err)), -EINVAL);
		assert_true(err[0] != '\0');
	}
}

/* An ACL xattr value (acl(5)): version 2, then tag, perm, id entries. */
static size_t acl_val(unsigned char *b, const uint32_t (*e)[3], size_t n)
{
	size_t len = 4;

	memset(b, 0, 4);
	b[0] = 2;
	for (size_t i = 0; i < n; i++, len += 8) {
		b[len] = (unsigned char)e[i][0];
		b[len + 1] = 0;
		b[len + 2] = (unsigned char)e[i][1];
		b[len + 3] = 0;
		for (int k = 0; k < 4; k++)
			b[len + 4 + k] = (unsigned char)(e[i][2] >> (8 * k));
	}
	return len;
}

/* The ids of ACL_USER (2) and ACL_GROUP (8) entries go through the ranges;
 * the others' (undefined) stay; the order is kept, as the kernel's. */
static void t_idmap_acl(void **s)
{
	static struct pfs_idmap um, gm;
	static const uint32_t in[][3] = {{1, 6, 0xffffffffu}, {2, 4, 1}, {2, 6, 0}, {2, 4, 70000},
					 {4, 4, 0xffffffffu}, {8, 2, 3}, {0x10, 6, 0xffffffffu},
					 {0x20, 4, 0xffffffffu}};
	static const uint32_t shown[][3] = {{1, 6, 0xffffffffu}, {2, 4, 110000}, {2, 6, 1000},
					    {2, 4, 65534}, {4, 4, 0xffffffffu}, {8, 2, 3},
					    {0x10, 6, 0xffffffffu}, {0x20, 4, 0xffffffffu}};
	unsigned char a[128], want[128];
	char err[64];
	size_t n;

	(void)s;
	assert_true(pfs_idmap_is_acl("system.posix_acl_access"));
	assert_true(pfs_idmap_is_acl("system.posix_acl_default"));
	assert_false(pfs_idmap_is_acl("user.posix_acl_access"));
	assert_int_equal(pfs_idmap_parse("0:1000:1:1:110000:65536", &um, err, sizeof(err)), 0);
	n = acl_val(a, in, 8);
	/* no group mapping: group ids stay as stored */
	assert_int_equal(pfs_idmap_acl(&um, NULL, a, n, true, 65534, 65534), 0);
	acl_val(want, shown, 8);
	assert_memory_equal(a, want, n);
	/* back: 65534 is in no range, so nothing may change */
	memcpy(want, a, n);
	assert_int_equal(pfs_idmap_acl(&um, &gm, a, n, false, 0, 0), -EINVAL);
	assert_memory_equal(a, want, n);
	/* malformed: a partial entry, another version */
	assert_int_equal(pfs_idmap_acl(&um, NULL, a, n - 1, true, 0, 0), -EINVAL);
	a[0] = 1;
	assert_int_equal(pfs_idmap_acl(&um, NULL, a, n, true, 0, 0), -EINVAL);
	assert_int_equal(pfs_idmap_acl(&um, NULL, a, 2, true, 0, 0), -EINVAL);
}

/* A fake object with attributes of every namespace: the kept ones
 * (user.*, the ACLs, security.*, trusted.*) and not (the overlay's own,
 * other system.* ones). */
static const char xb_names[] = "user.a\0security.x\0trusted.overlay.o\0user.overlay.u\0"
			       "system.posix_acl_access\0system.other\0trusted.t\0user.empty\0";

static ssize_t xb_list(void *arg, char *buf, size_t len)
{
	(void)arg;
	if (len && len < sizeof(xb_names) - 1)
		return -ERANGE;
	if (len)
		memcpy(buf, xb_names, sizeof(xb_names) - 1);
	return (ssize_t)sizeof(xb_names) - 1;
}

static const char *xb_value(const char *name)
{
	return !strcmp(name, "user.a") ? "one" : !strcmp(name, "user.empty") ? "" : name;
}

static ssize_t xb_get(void *arg, const char *name, void *buf, size_t len)
{
	const char *v = xb_value(name);

	(void)arg;
	if (len && len < strlen(v))
		return -ERANGE;
	if (len)
		memcpy(buf, v, strlen(v));
	return (ssize_t)strlen(v);
}

static void t_xblob(void **s)
{
	static const char *const kept[] = {"user.a", "security.x", "system.posix_acl_access",
					   "trusted.t", "user.empty"};
	const struct pfs_xblob_src src = {xb_list, xb_get, NULL};
	const char *k = NULL, *v = NULL;
	size_t len, vl = 0, ends[5], at = 0;
	char *b;

	(void)s;
	assert_int_equal(pfs_xblob_read(&src, &b, &len), 0);
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(pfs_xblob_next(b, len, &k, &v, &vl), 1);
		assert_string_equal(k, kept[i]);
		assert_int_equal(vl, strlen(xb_value(kept[i])));
		assert_memory_equal(v, xb_value(kept[i]), vl);
		ends[i] = at = (size_t)(v - b) + vl;
	}
	assert_int_equal(pfs_xblob_next(b, len, &k, &v, &vl), 0);
	assert_int_equal(at, len);
	/* torn: every cut short of the whole is refused, never read past */
	for (size_t cut = 1; cut < len; cut++) {
		bool boundary = false;
		int r = 0;

		for (size_t i = 0; i < 5; i++)
			boundary |= cut == ends[i];
		k = NULL;
		for (int i = 0; i < 6 && (r = pfs_xblob_next(b, cut, &k, &v, &vl)) > 0; i++)
			;
		assert_true(r == -EINVAL || (r == 0 && boundary));
	}
	free(b);
}

/* A blob written when only user.* ones were kept (the same form; an older
 * daemon kept user.overlay.* too): read as it is. */
static void t_xblob_old(void **s)
{
	static const char old[] = "user.a\0\3\0\0\0oneuser.overlay.x\0\1\0\0\0y";
	const char *k = NULL, *v = NULL;
	size_t vl = 0;

	(void)s;
	assert_int_equal(pfs_xblob_next(old, sizeof(old) - 1, &k, &v, &vl), 1);
	assert_string_equal(k, "user.a");
	assert_memory_equal(v, "one", 3);
	assert_int_equal(pfs_xblob_next(old, sizeof(old) - 1, &k, &v, &vl), 1);
	assert_string_equal(k, "user.overlay.x");
	assert_false(pfs_xblob_kept(k));
	assert_int_equal(pfs_xblob_next(old, sizeof(old) - 1, &k, &v, &vl), 0);
	assert_true(pfs_xblob_kept("system.posix_acl_default"));
	assert_false(pfs_xblob_kept("system.posix_acl_defaults"));
	assert_false(pfs_xblob_kept("trusted.overlay.opaque"));
	assert_true(pfs_xblob_kept("trusted.overlayx"));
	assert_true(pfs_xblob_kept("security.capability"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_errname),       cmocka_unit_test(t_idmap),
		cmocka_unit_test(t_idmap_acl),      cmocka_unit_test(t_xblob),
		cmocka_unit_test(t_xblob_old),
		cmocka_unit_test(t_parse_size),     cmocka_unit_test(t_parse_long),
		cmocka_unit_test(t_parse_seconds), cmocka_unit_test(t_fmt_time),
		cmocka_unit_test(t_mountinfo),   cmocka_unit_test(t_mountinfo_malformed),
		cmocka_unit_test(t_valid_name),    cmocka_unit_test(t_path_join),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
