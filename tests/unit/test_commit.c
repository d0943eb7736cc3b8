/* test_commit: commit, discard and the fault store on temporary
 * directories, without FUSE. An upper in the kernel overlayfs format is
 * laid over a lower, committed in place or atomically, and the lower's
 * tree is read back; a commit failed by the fault store keeps the upper,
 * and a second commit completes it to the very tree an uninterrupted one
 * leaves. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "commit/commit.h"
#include "store/store.h"

struct dirs {
	char base[64], upper[96], lower[96], work[96];
};

static void put(const char *dir, const char *rel, const char *data)
{
	char p[PATH_MAX];
	FILE *f;

	assert_true((size_t)snprintf(p, sizeof(p), "%s/%s", dir, rel) < sizeof(p));
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(data, f);
	assert_int_equal(fclose(f), 0);
}

static void mk(const char *dir, const char *rel)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	assert_int_equal(mkdir(p, 0755), 0);
}

static void sym(const char *dir, const char *rel, const char *target)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	assert_int_equal(symlink(target, p), 0);
}

/* overlayfs's whiteout: a 0/0 device where we may make one, else the
 * OCI `.wh.NAME` form (ovlfmt.h reads both). */
static void whiteout(const char *dir, const char *rel)
{
	char p[PATH_MAX], wh[PATH_MAX];
	const char *slash = strrchr(rel, '/');

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	if (mknod(p, S_IFCHR | 0, makedev(0, 0)) == 0)
		return;
	snprintf(wh, sizeof(wh), "%.*s.wh.%s", slash ? (int)(slash - rel + 1) : 0, rel,
		 slash ? slash + 1 : rel);
	put(dir, wh, "");
}

static void app(char *out, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void app(char *out, size_t len, const char *fmt, ...)
{
	size_t used = strlen(out);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out + used, len - used, fmt, ap);
	va_end(ap);
}

/* The tree under dir, one line per entry in name order: "d/" for a
 * directory, "f=DATA" for a file, "l->TARGET" for a symlink. */
static void dump(const char *dir, const char *rel, char *out, size_t len)
{
	char p[PATH_MAX];
	struct dirent **v;
	int n;

	snprintf(p, sizeof(p), "%s%s%s", dir, *rel ? "/" : "", rel);
	n = scandir(p, &v, NULL, alphasort);
	assert_true(n >= 0);
	for (int i = 0; i < n; i++) {
		char r[512], q[1024], buf[256];
		struct stat st;

		if (strcmp(v[i]->d_name, ".") && strcmp(v[i]->d_name, "..")) {
			snprintf(r, sizeof(r), "%.200s%s%.255s", rel, *rel ? "/" : "", v[i]->d_name);
			snprintf(q, sizeof(q), "%.400s/%.500s", dir, r);
			assert_int_equal(lstat(q, &st), 0);
			if (S_ISDIR(st.st_mode)) {
				app(out, len, "%s/\n", r);
				dump(dir, r, out, len);
			} else if (S_ISLNK(st.st_mode)) {
				ssize_t k = readlink(q, buf, sizeof(buf) - 1);

				assert_true(k >= 0);
				buf[k] = '\0';
				app(out, len, "%s->%s\n", r, buf);
			} else if (S_ISREG(st.st_mode)) {
				FILE *f = fopen(q, "r");
				size_t k;

				assert_non_null(f);
				k = fread(buf, 1, sizeof(buf) - 1, f);
				fclose(f);
				buf[k] = '\0';
				app(out, len, "%s=%s\n", r, buf);
			} else {
				app(out, len, "%s?\n", r);
			}
		}
		free(v[i]);
	}
	free(v);
}

static const char *tree(const char *dir)
{
	static char out[4096];

	out[0] = '\0';
	dump(dir, "", out, sizeof(out));
	return out;
}

static ino_t ino(const char *dir, const char *rel)
{
	char p[PATH_MAX];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	assert_int_equal(lstat(p, &st), 0);
	return st.st_ino;
}

/* A lower, and an upper over it that adds, changes, whites out, merges,
 * replaces (opaque), links and symlinks. */
static void lay(struct dirs *d)
{
	char p[PATH_MAX];
	const char *tmp = getenv("TMPDIR");

	snprintf(d->base, sizeof(d->base), "%s/pfs-commit-XXXXXX", tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(d->base));
	snprintf(d->upper, sizeof(d->upper), "%s/upper", d->base);
	snprintf(d->lower, sizeof(d->lower), "%s/lower", d->base);
	snprintf(d->work, sizeof(d->work), "%s/work", d->base);
	mk(d->base, "upper");
	mk(d->base, "lower");
	mk(d->base, "work");
	mk(d->base, "work/scratch");

	put(d->lower, "keep.txt", "keep");
	put(d->lower, "change.txt", "old");
	put(d->lower, "gone.txt", "bye");
	mk(d->lower, "dir");
	put(d->lower, "dir/a", "a");
	put(d->lower, "dir/b", "b");
	mk(d->lower, "opq");
	put(d->lower, "opq/x", "x");
	put(d->lower, "opq/y", "y");
	sym(d->lower, "link", "keep.txt");

	put(d->upper, "new.txt", "new");
	put(d->upper, "change.txt", "new content");
	whiteout(d->upper, "gone.txt");
	mk(d->upper, "dir");
	put(d->upper, "dir/c", "c");
	whiteout(d->upper, "dir/a");
	mk(d->upper, "opq");
	put(d->upper, "opq/.wh..wh..opq", "");
	put(d->upper, "opq/z", "z");
	put(d->upper, "hl1", "hard");
	snprintf(p, sizeof(p), "%s/hl2", d->upper);
	{
		char from[PATH_MAX];

		snprintf(from, sizeof(from), "%s/hl1", d->upper);
		assert_int_equal(link(from, p), 0);
	}
	sym(d->upper, "sym", "new.txt");
	mk(d->upper, "newdir");
	mk(d->upper, "newdir/deep");
	put(d->upper, "newdir/deep/f", "deep");
}

static const char committed[] = "change.txt=new content\n"
				"dir/\n"
				"dir/b=b\n"
				"dir/c=c\n"
				"hl1=hard\n"
				"hl2=hard\n"
				"keep.txt=keep\n"
				"link->keep.txt\n"
				"new.txt=new\n"
				"newdir/\n"
				"newdir/deep/\n"
				"newdir/deep/f=deep\n"
				"opq/\n"
				"opq/z=z\n"
				"sym->new.txt\n";

static const char original[] = "change.txt=old\n"
			       "dir/\n"
			       "dir/a=a\n"
			       "dir/b=b\n"
			       "gone.txt=bye\n"
			       "keep.txt=keep\n"
			       "link->keep.txt\n"
			       "opq/\n"
			       "opq/x=x\n"
			       "opq/y=y\n";

static void cleanup(struct dirs *d)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->base);
	assert_int_equal(system(cmd), 0);
}

static int commit(struct dirs *d, struct pfs_store *st, bool atomic, char *err, size_t len)
{
	struct pfs_commit_opts o = {
		.upper = d->upper, .lower = d->lower, .work = d->work,
		.atomic = atomic, .store = st,
	};

	return pfs_commit(&o, err, len);
}

static void check_committed(struct dirs *d)
{
	assert_string_equal(tree(d->lower), committed);
	assert_true(ino(d->lower, "hl1") == ino(d->lower, "hl2"));
	assert_string_equal(tree(d->upper), "");
	assert_string_equal(tree(d->work), "");
}

static void commit_clean(bool atomic)
{
	char err[1024];
	struct dirs d;

	lay(&d);
	assert_string_equal(tree(d.lower), original);
	assert_int_equal(commit(&d, pfs_store_local(), atomic, err, sizeof(err)), 0);
	check_committed(&d);
	cleanup(&d);
}

static void t_inplace(void **s)
{
	(void)s;
	commit_clean(false);
}

static void t_atomic(void **s)
{
	(void)s;
	commit_clean(true);
}

/* The fault store fails the commit at spec; the upper is kept whole (or,
 * swapped: an atomic commit failed after its swap, the new tree is in
 * place), and the commit run again through the local store completes it. */
static void commit_faulted(bool atomic, const char *spec, bool swapped)
{
	char err[1024], upper_before[4096];
	struct pfs_store *st;
	struct dirs d;
	int ret;

	lay(&d);
	snprintf(upper_before, sizeof(upper_before), "%s", tree(d.upper));
	st = pfs_store_fault_new(pfs_store_local(), spec, err, sizeof(err));
	assert_non_null(st);
	ret = commit(&d, st, atomic, err, sizeof(err));
	pfs_store_free(st);
	if (getenv("PFS_TEST_VERBOSE"))
		print_message("%s %s: %s\n", atomic ? "atomic" : "in place", spec, err);
	if (ret == 0)
		fail_msg("%s: the commit did not fail", spec);
	if (swapped) {
		assert_non_null(strstr(err, "prismfs recover --lower"));
		assert_string_equal(tree(d.lower), committed);
	} else {
		/* Failed in the scan, or while applying. */
		if (!strstr(err, "the upper is kept") && !strstr(err, "nothing was changed"))
			fail_msg("%s: %s", spec, err);
		assert_string_equal(tree(d.upper), upper_before);
		if (atomic)
			assert_string_equal(tree(d.lower), original);
	}
	assert_int_equal(commit(&d, pfs_store_local(), atomic, err, sizeof(err)), 0);
	check_committed(&d);
	cleanup(&d);
}

static const char *const faults[] = {"rename:2", "copy:1", "mkdir:1", "link:1", "sync:3",
				     "chmod:1", "symlink:1", "open:9:ENOSPC",
				     "open:20-"};

static void t_inplace_faulted(void **s)
{
	(void)s;
	for (size_t i = 0; i < sizeof(faults) / sizeof(*faults); i++)
		commit_faulted(false, faults[i], false);
	/* Some entries applied already. */
	commit_faulted(false, "rename:4", false);
}

static void t_atomic_faulted(void **s)
{
	(void)s;
	for (size_t i = 0; i < sizeof(faults) / sizeof(*faults); i++)
		commit_faulted(true, faults[i], false);
	/* The journal's "swapped" write. */
	commit_faulted(true, "rename:4", true);
}

static void t_discard(void **s)
{
	char err[1024];
	struct dirs d;

	(void)s;
	lay(&d);
	assert_int_equal(pfs_discard(pfs_store_local(), d.upper, d.work, err, sizeof(err)), 0);
	assert_string_equal(tree(d.upper), "");
	assert_string_equal(tree(d.work), "");
	assert_string_equal(tree(d.lower), original);
	cleanup(&d);
}

static void t_recover_nothing(void **s)
{
	enum pfs_recovery done = PFS_RECOVERY_FINISHED;
	char err[1024];
	struct dirs d;

	(void)s;
	lay(&d);
	assert_int_equal(pfs_commit_recover(pfs_store_local(), d.lower, &done, err, sizeof(err)),
			 0);
	assert_int_equal(done, PFS_RECOVERY_NONE);
	assert_string_equal(tree(d.lower), original);
	cleanup(&d);
}

static void t_fault_specs(void **s)
{
	static const char *const bad[] = {"",        "open",     "open:",      "open:0",
					  "open:x",  "bogus:1",  "open:1:EWHAT", "open:1x",
					  "open:1:0", "stat:1,,"};
	char err[256];

	(void)s;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		err[0] = '\0';
		if (pfs_store_fault_new(pfs_store_local(), bad[i], err, sizeof(err)))
			fail_msg("'%s' was accepted", bad[i]);
		assert_non_null(strstr(err, "PRISMFS_FAULT"));
	}
	err[0] = '\0';
	assert_null(pfs_store_fault_new(pfs_store_local(), "bogus:1", err, sizeof(err)));
	assert_non_null(strstr(err, "unknown kind of call 'bogus'"));
}

/* The N-th call fails once, with the errno asked for (EIO by default);
 * the calls around it pass through. */
static void t_fault_nth(void **s)
{
	char err[256];
	struct stat st;
	struct pfs_store *f;

	(void)s;
	f = pfs_store_fault_new(pfs_store_local(), "stat:2:ENOSPC,unlink:1", err, sizeof(err));
	assert_non_null(f);
	assert_int_equal(pfs_st_stat(f, AT_FDCWD, "/", &st, 0), 0);
	assert_int_equal(pfs_st_stat(f, AT_FDCWD, "/", &st, 0), -ENOSPC);
	assert_int_equal(pfs_st_stat(f, AT_FDCWD, "/", &st, 0), 0);
	assert_int_equal(pfs_store_fault_count(f, PFS_ST_STAT), 3);
	assert_int_equal(pfs_st_unlink(f, AT_FDCWD, "/nonexistent-pfs", 0), -EIO);
	assert_int_equal(pfs_st_unlink(f, AT_FDCWD, "/nonexistent-pfs", 0), -ENOENT);
	assert_int_equal(pfs_store_fault_count(f, PFS_ST_UNLINK), 2);
	assert_int_equal(pfs_store_fault_count(f, PFS_ST_OPEN), 0);
	assert_int_equal(pfs_store_fault_count(pfs_store_local(), PFS_ST_STAT), 0);
	pfs_store_free(f);
}

/* "N-": that call and every later one fail; a failed call changed
 * nothing. */
static void t_fault_onward(void **s)
{
	char err[256], p[128];
	struct pfs_store *f;
	struct stat st;
	struct dirs d;

	(void)s;
	snprintf(d.base, sizeof(d.base), "%s/pfs-fault-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(d.base));
	f = pfs_store_fault_new(pfs_store_local(), "mkdir:2-:EROFS", err, sizeof(err));
	assert_non_null(f);
	snprintf(p, sizeof(p), "%s/a", d.base);
	assert_int_equal(pfs_st_mkdir(f, AT_FDCWD, p, 0755), 0);
	snprintf(p, sizeof(p), "%s/b", d.base);
	assert_int_equal(pfs_st_mkdir(f, AT_FDCWD, p, 0755), -EROFS);
	assert_int_equal(lstat(p, &st), -1);
	snprintf(p, sizeof(p), "%s/c", d.base);
	assert_int_equal(pfs_st_mkdir(f, AT_FDCWD, p, 0755), -EROFS);
	assert_int_equal(pfs_store_fault_count(f, PFS_ST_MKDIR), 3);
	assert_string_equal(tree(d.base), "a/\n");
	pfs_store_free(f);
	cleanup(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_inplace),
		cmocka_unit_test(t_atomic),
		cmocka_unit_test(t_inplace_faulted),
		cmocka_unit_test(t_atomic_faulted),
		cmocka_unit_test(t_discard),
		cmocka_unit_test(t_recover_nothing),
		cmocka_unit_test(t_fault_specs),
		cmocka_unit_test(t_fault_nth),
		cmocka_unit_test(t_fault_onward),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
