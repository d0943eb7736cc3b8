/* history_restore_tree: restore of a directory subtree, a symlink, a path
 * that did not exist at the snapshot, and of everything (issue 17 item 6;
 * docs/HISTORY.md, Restore). The snapshot's copy of PATH is read from the
 * mount's own .history tree (MNT/.history/SNAP/PATH: content, modes,
 * owners, symlinks and times as they were) and built beside PATH, in the
 * mount, under a hidden temporary .prismfs-restore.PID.N; then one
 * renameat2(RENAME_EXCHANGE) puts it at PATH and the old tree, now under
 * the temporary's name, is removed. Every step goes through the mount, so
 * the journal records the restore as any other change, and a process
 * looking up PATH finds either the old tree or the restored one, whole.
 *
 * A kill of this command leaves PATH old (before the exchange) or new
 * (after it), plus a temporary that the next restore in that directory
 * removes: a temporary whose pid is no running process is a leftover. */
#include "cli/cli.h"
#include "cli/cmdutil.h"
#include "cli/history_restore_int.h"
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define TMP_PREFIX ".prismfs-restore."

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)f;
	if ((flag == FTW_DP ? rmdir(p) : unlink(p)) < 0 && errno != ENOENT)
		return -1;
	return 0;
}

/* rm -rf path, through the mount: 0 or -1 (errno). */
static int rm_tree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlink(path);
	return nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

bool pfs_hr_is_tmp(const char *name)
{
	return strncmp(name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0;
}

void pfs_hr_sweep(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[PATH_MAX * 2 + 300];

	if (!d)
		return;
	while ((e = readdir(d))) {
		long pid;

		if (!pfs_hr_is_tmp(e->d_name))
			continue;
		pid = strtol(e->d_name + strlen(TMP_PREFIX), NULL, 10);
		/* a live restore's own, or one whose pid we cannot tell: kept */
		if (pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (rm_tree(p) == 0)
			printf("removed %s, left by an interrupted restore\n", p);
	}
	closedir(d);
}

static int copy_file(const char *src, const char *dst, const struct stat *st)
{
	char buf[65536];
	ssize_t n = 0;
	int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, ret = -1;

	if (in < 0)
		return -1;
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0)
		goto out;
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));

			if (w < 0)
				goto out;
			off += w;
		}
	}
	if (n < 0)
		goto out;
	/* the owner where permitted (not permitted: the restorer's, as cp -p) */
	if ((fchown(out, st->st_uid, st->st_gid) < 0 && errno != EPERM) ||
	    fchmod(out, st->st_mode & 07777) < 0 || fsync(out) < 0)
		goto out;
	ret = 0;
out:
	if (out >= 0 && close(out) < 0)
		ret = -1;
	close(in);
	return ret;
}

/* Copy the tree at src (lstat st) to dst, which does not exist; the
 * buffers grow in place (their lengths restored on return). 0 or -1 with
 * errno, src or dst naming the path at fault. */
static int copy_tree(char *src, char *dst, size_t cap, const struct stat *st)
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	int ret = -1;

	if (S_ISDIR(st->st_mode)) {
		size_t ls = strlen(src), ld = strlen(dst);
		DIR *d;
		struct dirent *e;

		if (mkdir(dst, 0700) < 0 || !(d = opendir(src)))
			return -1;
		while ((e = readdir(d))) {
			struct stat cst;

			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			if (ls + strlen(e->d_name) + 2 > cap || ld + strlen(e->d_name) + 2 > cap) {
				errno = ENAMETOOLONG;
				closedir(d);
				return -1;
			}
			snprintf(src + ls, cap - ls, "/%s", e->d_name);
			snprintf(dst + ld, cap - ld, "/%s", e->d_name);
			if (lstat(src, &cst) < 0 || copy_tree(src, dst, cap, &cst) < 0) {
				closedir(d);
				return -1;
			}
			src[ls] = '\0';
			dst[ld] = '\0';
		}
		closedir(d);
		if ((lchown(dst, st->st_uid, st->st_gid) < 0 && errno != EPERM) ||
		    chmod(dst, st->st_mode & 07777) < 0)
			return -1;
		ret = 0;
	} else if (S_ISLNK(st->st_mode)) {
		char t[PATH_MAX];
		ssize_t n = readlink(src, t, sizeof(t) - 1);

		if (n < 0)
			return -1;
		t[n] = '\0';
		if (symlink(t, dst) < 0 || (lchown(dst, st->st_uid, st->st_gid) < 0 && errno != EPERM))
			return -1;
		ret = 0;
	} else if (S_ISREG(st->st_mode)) {
		ret = copy_file(src, dst, st);
	} else {
		ret = mknod(dst, st->st_mode, st->st_rdev);
		if (ret == 0 && lchown(dst, st->st_uid, st->st_gid) < 0 && errno != EPERM)
			ret = -1;
	}
	/* times last: the children made above changed the directory's */
	if (ret == 0 && utimensat(AT_FDCWD, dst, ts, AT_SYMLINK_NOFOLLOW) < 0)
		ret = -1;
	return ret;
}

/* target as a path's parent and a fresh temporary name beside it. */
static void tmp_beside(const char *target, char *tmp, size_t len)
{
	static unsigned n;
	const char *slash = strrchr(target, '/');

	snprintf(tmp, len, "%.*s/" TMP_PREFIX "%d.%u", (int)(slash - target), target,
		 (int)getpid(), n++);
}

int pfs_hr_restore_path(const char *canon_m, const char *bsnap, const char *snap,
			const char *rel)
{
	static char src[PATH_MAX * 2 + 300], dst[PATH_MAX * 2 + 300];
	char target[PATH_MAX * 2], parent[PATH_MAX * 2], tmp[PATH_MAX * 2 + 64];
	struct stat st, now;
	bool exists;

	snprintf(target, sizeof(target), "%s/%s", canon_m, rel);
	snprintf(parent, sizeof(parent), "%.*s", (int)(strrchr(target, '/') - target), target);
	if (lstat(parent, &now) < 0 || !S_ISDIR(now.st_mode)) {
		say("%s: its parent is not a directory now (restore the parent)", rel);
		return 1;
	}
	pfs_hr_sweep(parent);
	exists = lstat(target, &now) == 0;
	snprintf(src, sizeof(src), "%s/%s", bsnap, rel);
	tmp_beside(target, tmp, sizeof(tmp));
	snprintf(dst, sizeof(dst), "%s", tmp);
	if (lstat(src, &st) < 0) {
		if (errno != ENOENT) {
			say("%s: %s", src, strerror(errno));
			return 1;
		}
		if (!exists) {
			say("%s: did not exist at %s, nor does now", rel, snap);
			return 1;
		}
		/* removed in one rename: the name goes away whole */
		if (renameat2(AT_FDCWD, target, AT_FDCWD, tmp, RENAME_NOREPLACE) < 0) {
			say("%s: %s", rel, strerror(errno));
			return 1;
		}
		pfs_crashpoint("restore-moved-away");
		if (rm_tree(tmp) < 0)
			say("%s: %s (left under %s)", rel, strerror(errno), tmp);
		printf("removed %s (it did not exist at %s)\n", rel, snap);
		return 0;
	}
	if (copy_tree(src, dst, sizeof(src), &st) < 0) {
		say("%s: %s (copying %s)", rel, strerror(errno), src);
		goto fail;
	}
	pfs_crashpoint("restore-built");
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, target, exists ? RENAME_EXCHANGE : RENAME_NOREPLACE) <
	    0) {
		say("%s: %s", rel, strerror(errno));
		goto fail;
	}
	pfs_crashpoint("restore-exchanged");
	if (exists && rm_tree(tmp) < 0)
		say("%s: the old tree not removed: %s (left under %s)", rel, strerror(errno), tmp);
	printf("restored %s\n", rel);
	return 0;
fail:
	rm_tree(tmp); /* nothing changed at PATH */
	return 1;
}

static int add_name(char ***v, size_t *n, const char *name)
{
	char **nv;

	for (size_t i = 0; i < *n; i++)
		if (strcmp((*v)[i], name) == 0)
			return 0;
	nv = realloc(*v, (*n + 1) * sizeof(char *));
	if (!nv)
		return -1;
	*v = nv;
	if (!(nv[*n] = strdup(name)))
		return -1;
	(*n)++;
	return 0;
}

static int list_into(const char *dir, const char *skip, char ***v, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int ret = 0;

	if (!d)
		return -1;
	while (ret == 0 && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
		    strcmp(e->d_name, skip) && !pfs_hr_is_tmp(e->d_name))
			ret = add_name(v, n, e->d_name);
	closedir(d);
	return ret;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int pfs_hr_restore_all(const char *canon_m, const char *bsnap, const char *snap,
		       const char *past_name)
{
	char **v = NULL;
	size_t n = 0;
	int ret = 0;

	pfs_hr_sweep(canon_m);
	if (list_into(bsnap, past_name, &v, &n) < 0 || list_into(canon_m, past_name, &v, &n) < 0) {
		say("%s: %s", canon_m, strerror(errno));
		ret = 1;
		goto out;
	}
	qsort(v, n, sizeof(*v), cmp_str);
	for (size_t i = 0; i < n; i++)
		ret |= pfs_hr_restore_path(canon_m, bsnap, snap, v[i]);
	printf("restored everything from %s: each top-level entry atomically, the root as a"
	       " whole not\n", snap);
out:
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
	return ret;
}
