/* history_restore_tree: restore of a directory subtree, a symlink, a path
 * that did not exist at the snapshot, and of everything (issue 17 item 6;
 * docs/HISTORY.md, Restore). The snapshot's copy of PATH is read from the
 * mount's own .history tree (MNT/.history/SNAP/PATH: content, modes,
 * owners, symlinks, times, xattrs and ACLs as they were) and built beside
 * PATH, in the mount, under a hidden temporary .prismfs-restore.PID.N; then one
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
#include <sys/statvfs.h>
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

/* One entry of the snapshot's subtree, in pre-order. */
struct ent {
	char *rel; /* below the subtree's root ("" the root) */
	struct stat st;
	int fd;    /* a regular file's data, opened a batch ahead */
	char *link; /* a symlink's target, read when listed */
	char *xa;   /* its kept xattrs (ACLs too), read when listed; not a symlink's */
	size_t xalen;
};

struct ents {
	struct ent *v;
	size_t n, cap;
};

static int collect(struct ents *e, char *src, size_t cap, size_t root_len)
{
	struct ent *x;
	size_t ls = strlen(src);
	DIR *d;
	struct dirent *de;
	int ret = 0;

	if (e->n == e->cap) {
		size_t nc = e->cap ? e->cap * 2 : 64;
		struct ent *nv = realloc(e->v, nc * sizeof(*nv));

		if (!nv)
			return -1;
		e->v = nv;
		e->cap = nc;
	}
	x = &e->v[e->n];
	x->fd = -1;
	x->link = NULL;
	x->xa = NULL;
	x->xalen = 0;
	if (lstat(src, &x->st) < 0 || !(x->rel = strdup(src + root_len + (ls > root_len))))
		return -1;
	e->n++;
	if (S_ISLNK(x->st.st_mode)) {
		char t[PATH_MAX];
		ssize_t n = readlink(src, t, sizeof(t) - 1);

		if (n < 0)
			return -1;
		t[n] = '\0';
		return (x->link = strdup(t)) ? 0 : -1;
	}
	/* files and directories have user.* ones (xattr(7)), a device or a
	 * fifo may have an ACL */
	if (pfs_hr_xattrs_read(src, &x->xa, &x->xalen) < 0)
		return -1;
	if (!S_ISDIR(x->st.st_mode))
		return 0;
	if (!(d = opendir(src)))
		return -1;
	while (ret == 0 && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (ls + strlen(de->d_name) + 2 > cap) {
			errno = ENAMETOOLONG;
			ret = -1;
			break;
		}
		snprintf(src + ls, cap - ls, "/%s", de->d_name);
		ret = collect(e, src, cap, root_len);
		src[ls] = '\0';
	}
	closedir(d);
	return ret;
}

static int copy_data(int in, int out)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(in, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));

			if (w < 0)
				return -1;
			off += w;
		}
	}
	return n < 0 ? -1 : 0;
}

static int make_one(const char *dst, struct ent *x)
{
	const struct stat *st = &x->st;
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	int out;

	if (S_ISDIR(st->st_mode)) {
		int err;

		/* owner, other xattrs, mode, times: after its children (a
		 * default ACL set now would be theirs, an access ACL might deny
		 * making them) */
		if (mkdir(dst, 0700) < 0)
			return -1;
		if (!x->xalen)
			return 0;
		if ((out = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
			return -1;
		err = pfs_hr_xattrs_put(out, x->xa, x->xalen) < 0 ? errno : 0;
		close(out);
		errno = err;
		return err ? -1 : 0;
	}
	if (S_ISLNK(st->st_mode)) {
		if (symlink(x->link, dst) < 0)
			return -1;
	} else if (S_ISREG(st->st_mode)) {
		out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (out < 0)
			return -1;
		/* the xattrs before the mode, which may deny writing them */
		if (copy_data(x->fd, out) < 0 || pfs_hr_xattrs_put(out, x->xa, x->xalen) < 0 ||
		    fsync(out) < 0) {
			close(out);
			return -1;
		}
		if (close(out) < 0)
			return -1;
	} else if (mknod(dst, st->st_mode, st->st_rdev) < 0) {
		return -1;
	}
	/* the owner where permitted (not permitted: the restorer's, as cp -p),
	 * then the xattrs but user.* (a chown drops security.capability), then
	 * the mode (the ACL's mask as it was) */
	if ((lchown(dst, st->st_uid, st->st_gid) < 0 && errno != EPERM) ||
	    (!S_ISLNK(st->st_mode) && (pfs_hr_xattrs_fix(dst, x->xa, x->xalen) < 0 ||
					chmod(dst, st->st_mode & 07777) < 0)))
		return -1;
	return utimensat(AT_FDCWD, dst, ts, AT_SYMLINK_NOFOLLOW);
}

/* Copy the snapshot's tree at src to dst (absent). Reads and writes are
 * not interleaved one by one: every write changes the journal, after which
 * the daemon replays it again for the next .history lookup; so the tree
 * is listed first, and files are opened BATCH at a time before any is
 * written -- and no more than a quarter of the mount's size in data: an
 * open file cannot leave a memory-cached mount's memory (--cache-size,
 * which its statfs reports), so a batch larger than it would fill it.
 * 0 or -1 with errno. */
#define BATCH 256
static int copy_tree(char *src, char *dst, size_t cap)
{
	struct ents e = {0};
	size_t ls = strlen(src), ld = strlen(dst), next = 0;
	int ret = -1, err = 0;
	unsigned long long maxb = ~0ull;
	struct statvfs sv;

	if (statvfs(src, &sv) == 0 && sv.f_blocks)
		maxb = (unsigned long long)sv.f_blocks * sv.f_frsize / 4;
	if (collect(&e, src, cap, ls) < 0)
		goto out;
	for (size_t i = 0; i < e.n; i++) {
		struct ent *x = &e.v[i];

		snprintf(dst + ld, cap - ld, "%s%s", *x->rel ? "/" : "", x->rel);
		if (S_ISREG(x->st.st_mode) && x->fd < 0) {
			/* the next batch of files opened together */
			size_t k = 0;
			unsigned long long bytes = 0;

			if (next < i)
				next = i;
			for (; next < e.n && k < BATCH; next++) {
				struct ent *y = &e.v[next];
				char p[PATH_MAX * 2 + 300];

				if (!S_ISREG(y->st.st_mode))
					continue;
				if (k && bytes + (unsigned long long)y->st.st_size > maxb)
					break;
				bytes += (unsigned long long)y->st.st_size;
				snprintf(p, sizeof(p), "%.*s%s%s", (int)ls, src, *y->rel ? "/" : "",
					 y->rel);
				if ((y->fd = open(p, O_RDONLY | O_CLOEXEC)) < 0)
					goto out;
				k++;
			}
		}
		if (make_one(dst, x) < 0)
			goto out;
		if (x->fd >= 0) {
			close(x->fd);
			x->fd = -1;
		}
	}
	/* directories last, deepest first: their children changed their times */
	for (size_t i = e.n; i-- > 0;) {
		struct ent *x = &e.v[i];
		struct timespec ts[2] = {x->st.st_atim, x->st.st_mtim};

		if (!S_ISDIR(x->st.st_mode))
			continue;
		snprintf(dst + ld, cap - ld, "%s%s", *x->rel ? "/" : "", x->rel);
		if ((lchown(dst, x->st.st_uid, x->st.st_gid) < 0 && errno != EPERM) ||
		    pfs_hr_xattrs_fix(dst, x->xa, x->xalen) < 0 ||
		    chmod(dst, x->st.st_mode & 07777) < 0 ||
		    utimensat(AT_FDCWD, dst, ts, AT_SYMLINK_NOFOLLOW) < 0)
			goto out;
	}
	ret = 0;
out:
	err = errno;
	for (size_t i = 0; i < e.n; i++) {
		if (e.v[i].fd >= 0)
			close(e.v[i].fd);
		free(e.v[i].rel);
		free(e.v[i].link);
		free(e.v[i].xa);
	}
	free(e.v);
	src[ls] = '\0';
	dst[ld] = '\0';
	errno = err;
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
			const char *rel, bool over)
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
	if (copy_tree(src, dst, sizeof(src)) < 0) {
		say("%s: %s (copying %s)", rel, strerror(errno), src);
		goto fail;
	}
	pfs_crashpoint("restore-built");
	/* over: a file onto a file (a mapped name can be replaced, not
	 * exchanged away); the old one goes with the rename */
	if (over && exists ? rename(tmp, target) < 0
			   : renameat2(AT_FDCWD, tmp, AT_FDCWD, target,
				       exists ? RENAME_EXCHANGE : RENAME_NOREPLACE) < 0) {
		say("%s: %s", rel, strerror(errno));
		goto fail;
	}
	pfs_crashpoint("restore-exchanged");
	if (exists && !over && rm_tree(tmp) < 0)
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

int pfs_hr_restore_in(const char *canon_m, const char *bsnap, const char *dir,
		      const char *skip, int (*one)(void *arg, const char *rel), void *arg)
{
	char **v = NULL, m[PATH_MAX * 2 + 2], b[PATH_MAX * 2 + 300], rel[PATH_MAX + NAME_MAX + 2];
	size_t n = 0;
	int ret = 0;

	snprintf(m, sizeof(m), "%s%s%s", canon_m, *dir ? "/" : "", dir);
	snprintf(b, sizeof(b), "%s%s%s", bsnap, *dir ? "/" : "", dir);
	pfs_hr_sweep(m);
	/* absent then (made since) or now (removed since): not an error */
	if ((list_into(b, skip, &v, &n) < 0 && errno != ENOENT && errno != ENOTDIR) ||
	    (list_into(m, skip, &v, &n) < 0 && errno != ENOENT && errno != ENOTDIR)) {
		say("%s: %s", *dir ? dir : canon_m, strerror(errno));
		ret = 1;
		goto out;
	}
	qsort(v, n, sizeof(*v), cmp_str);
	for (size_t i = 0; i < n; i++) {
		snprintf(rel, sizeof(rel), "%s%s%s", dir, *dir ? "/" : "", v[i]);
		ret |= one(arg, rel);
	}
out:
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
	return ret;
}

struct all_ctx {
	const char *canon_m, *bsnap, *snap;
};

static int restore_one_tree(void *arg, const char *rel)
{
	struct all_ctx *c = arg;

	return pfs_hr_restore_path(c->canon_m, c->bsnap, c->snap, rel, false);
}

int pfs_hr_restore_all(const char *canon_m, const char *bsnap, const char *snap,
		       const char *past_name)
{
	struct all_ctx c = {canon_m, bsnap, snap};
	int ret = pfs_hr_restore_in(canon_m, bsnap, "", past_name, restore_one_tree, &c);

	printf("restored everything from %s: each top-level entry atomically, the root as a"
	       " whole not\n", snap);
	return ret;
}
