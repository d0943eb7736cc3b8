/* history_save: the previous version of an object, saved into
 * DIR/versions before its first change after a snapshot (history.h). */
#include "history/history_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static unsigned bucket(dev_t dev, ino_t ino)
{
	unsigned long long k = (unsigned long long)ino * 0x9E3779B97F4A7C15ull ^ dev;

	return (unsigned)(k >> 40) % PFS_HIST_NB;
}

/* What is saved once per snapshot: an object, or each name of a file
 * with hard links (.history shows hard links as separate files, each its
 * own past: the first change through one name saved it under that name
 * only, and the removal of another name since left that name out of the
 * snapshot). 0 for one name, else a hash (FNV-1a) of the path. */
static unsigned long long saved_name(const struct stat *st, const char *path)
{
	unsigned long long k = 0xcbf29ce484222325ull;

	if (S_ISDIR(st->st_mode) || st->st_nlink < 2)
		return 0;
	for (const unsigned char *c = (const unsigned char *)path; *c; c++)
		k = (k ^ *c) * 0x100000001b3ull;
	return k | 1;
}

/* Under h->lock: the entry of (dev, ino, name), or NULL; *first: a
 * saved entry of another name of (dev, ino), if any. */
static struct hsaved *find(struct pfs_history *h, dev_t dev, ino_t ino, unsigned long long name,
			   struct hsaved **first)
{
	struct hsaved *s;

	if (first)
		*first = NULL;
	for (s = h->saved[bucket(dev, ino)]; s; s = s->next) {
		if (s->dev != dev || s->ino != ino)
			continue;
		if (s->name == name)
			return s;
		if (first && s->ready && !*first)
			*first = s;
	}
	return NULL;
}

/* Under h->lock: true if (dev, ino, name) was saved for this snapshot;
 * else mark it saved (settle says how the save went). */
static bool seen(struct pfs_history *h, dev_t dev, ino_t ino, unsigned long long name,
		 struct hsaved **first)
{
	struct hsaved **p = &h->saved[bucket(dev, ino)], *s;

	if (find(h, dev, ino, name, first))
		return true;
	s = calloc(1, sizeof(*s));
	if (s) {
		s->dev = dev;
		s->ino = ino;
		s->name = name;
		s->next = *p;
		*p = s;
	}
	return false;
}

/* Where a version is saved: its path, or for a descriptor whose name was
 * removed while other names live on (hard links), a path no tree has
 * ("//deleted/DEV:INO": found by its inode only, see has_ino). */
static int save_path(struct pfs_history *h, int dirfd, const char *name, const struct stat *st,
		     char *path, size_t len, bool *stale)
{
	int r;

	*stale = false;
	r = pfs_hist_path_at(h, dirfd, name, path, len, stale);
	if (r == 0 && *stale)
		snprintf(path, len, "//deleted/%llu:%llu", (unsigned long long)st->st_dev,
			 (unsigned long long)st->st_ino);
	return r;
}

/* Is the inode kept with the version? For a file with hard links (each
 * name's past looks the version up by it) and one reached through a
 * removed name. */
static bool has_ino(const struct stat *st, bool stale)
{
	return !S_ISDIR(st->st_mode) && (st->st_nlink > 1 || stale);
}

void pfs_hist_saved_clear(struct pfs_history *h)
{
	for (unsigned i = 0; i < PFS_HIST_NB; i++) {
		while (h->saved[i]) {
			struct hsaved *s = h->saved[i];

			h->saved[i] = s->next;
			free(s->xa);
			free(s);
		}
	}
}

/* Copy the regular file (dirfd, name) into DIR/versions/file. */
static int copy_data(struct pfs_history *h, int dirfd, const char *name, const struct stat *st,
		     const char *file)
{
	char proc[40];
	int src, dst, r;

	/* an fd (or O_PATH fd) of its own: read it through /proc. O_NOATIME:
	 * the save is the history's read, not the user's, and must not move
	 * the file's atime (a mount with --history answers stat as one
	 * without); refused (EPERM) when the daemon neither owns the file nor
	 * has CAP_FOWNER, then read as before. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", dirfd);
	for (int noatime = O_NOATIME;; noatime = 0) {
		src = name && *name ? pfs_st_openat(h->in, dirfd, name,
						    O_RDONLY | O_CLOEXEC | O_NOFOLLOW |
							    O_NONBLOCK | noatime,
						    0)
				    : pfs_st_openat(h->in, AT_FDCWD, proc,
						    O_RDONLY | O_CLOEXEC | noatime, 0);
		if (src != -EPERM || !noatime)
			break;
	}
	if (src < 0)
		return src;
	dst = openat(h->vdir, file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (dst < 0) {
		r = -errno;
		close(src);
		return r;
	}
	/* A reflink shares the blocks (XFS, btrfs): constant space until
	 * the live file is written; otherwise a copy, holes kept. */
	r = ioctl(dst, FICLONE, src) == 0 ? 0 : pfs_st_copy(h->in, dst, src, st->st_size, false,
							   NULL, NULL);
	if (r == 0 && fsync(dst) < 0)
		r = -errno;
	close(dst);
	close(src);
	if (r < 0)
		unlinkat(h->vdir, file, 0);
	return r;
}

/* A symlink's target into DIR/versions/file: what export needs to write
 * it back (a symlink changes only by going away). */
static int save_link(struct pfs_history *h, int dirfd, const char *name, const char *file)
{
	char t[PATH_MAX];
	ssize_t n = pfs_st_readlink(h->in, dirfd, name && *name ? name : "", t, sizeof(t));
	int dst, r = 0;

	if (n < 0)
		return (int)n;
	dst = openat(h->vdir, file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (dst < 0)
		return -errno;
	if (write(dst, t, (size_t)n) != n || fsync(dst) < 0)
		r = errno ? -errno : -EIO;
	close(dst);
	if (r < 0)
		unlinkat(h->vdir, file, 0);
	return r;
}

/* Under h->lock: the row of the version of path (st) saved as file. */
static int save_row(struct pfs_history *h, long long snap, const char *path,
		    const struct stat *st, const char *file, bool ino, const char *xa,
		    size_t xalen)
{
	sqlite3_stmt *q = h->sav;
	int r;

	sqlite3_bind_int64(q, 1, snap);
	sqlite3_bind_text(q, 3, path, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 4, st->st_mode);
	sqlite3_bind_int64(q, 5, st->st_uid);
	sqlite3_bind_int64(q, 6, st->st_gid);
	sqlite3_bind_int64(q, 7, st->st_size);
	sqlite3_bind_int64(q, 8, (sqlite3_int64)st->st_mtim.tv_sec * 1000000000ll +
				      st->st_mtim.tv_nsec);
	if (S_ISREG(st->st_mode) || S_ISLNK(st->st_mode))
		sqlite3_bind_text(q, 9, file, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(q, 9);
	sqlite3_bind_int64(q, 10, (sqlite3_int64)st->st_rdev);
	if (ino) {
		sqlite3_bind_int64(q, 11, (sqlite3_int64)st->st_dev);
		sqlite3_bind_int64(q, 12, (sqlite3_int64)st->st_ino);
	}
	/* none is an empty blob: kept, and none (NULL: an older version's) */
	sqlite3_bind_blob(q, 13, xa ? xa : "", (int)xalen, SQLITE_TRANSIENT);
	r = sqlite3_step(q) == SQLITE_DONE ? 0 : -EIO;
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
	return r;
}

/* Under h->lock: the mark of (st's object, name) made by seen (gone if a
 * snapshot came meanwhile: found again, not kept) done (r 0) or taken back. */
static void settle(struct pfs_history *h, const struct stat *id, unsigned long long name,
		   const struct stat *st, const char *file, char *xa, size_t xalen, int r)
{
	struct hsaved **p = &h->saved[bucket(id->st_dev, id->st_ino)], *m;

	while (*p && ((*p)->dev != id->st_dev || (*p)->ino != id->st_ino || (*p)->name != name))
		p = &(*p)->next;
	if (!(m = *p) || m->ready) {
		free(xa);
		return;
	}
	if (r == 0) {
		m->ready = true;
		m->st = *st;
		snprintf(m->file, sizeof(m->file), "%s", file);
		m->xa = xa;
		m->xalen = xalen;
		return;
	}
	free(xa);
	*p = m->next;
	free(m);
}

int pfs_hist_save_open(struct pfs_history *h, int fd, long long snap)
{
	char path[PATH_MAX], file[64], *xa = NULL;
	unsigned long long sname;
	size_t xalen = 0;
	struct stat st;
	bool stale;
	int r;

	path[0] = '\0';
	/* unlinked while open (st_nlink 0): in no tree, past or present */
	if (h->vdir < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink == 0)
		return 0;
	r = save_path(h, fd, NULL, &st, path, sizeof(path), &stale);
	if (r < 0)
		goto out;
	sname = saved_name(&st, path);
	if (seen(h, st.st_dev, st.st_ino, sname, NULL))
		return 0;
	snprintf(file, sizeof(file), "%lld-%llu", snap, ++h->vseq);
	r = pfs_hist_xattrs(h, fd, NULL, &xa, &xalen);
	if (r == 0)
		r = copy_data(h, fd, NULL, &st, file);
	if (r == 0)
		r = save_row(h, snap, path, &st, file, has_ino(&st, stale), xa, xalen);
	settle(h, &st, sname, &st, file, xa, xalen, r);
out:
	if (r < 0)
		fprintf(stderr, "prismfs: history: cannot save %s, open for writing at the "
			"snapshot: %s\n", path, strerror(-r));
	return r;
}

int pfs_hist_save(struct pfs_history *h, int dirfd, const char *name)
{
	char path[PATH_MAX], file[64], *xa = NULL;
	struct hsaved *first = NULL, was;
	unsigned long long sname;
	size_t xalen = 0;
	struct stat st, id;
	long long snap;
	bool stale;
	int r;

	if (!h->snap || h->vdir < 0)
		return 0;
	pfs_hist_obj(h, &dirfd, &name);
	r = name && *name ? pfs_st_stat(h->in, dirfd, name, &st, AT_SYMLINK_NOFOLLOW)
			  : pfs_st_fstat(h->in, dirfd, &st);
	if (r == -ENOENT)
		return 0; /* nothing there: nothing to save */
	if (r < 0)
		return r;
	r = save_path(h, dirfd, name, &st, path, sizeof(path), &stale);
	if (r < 0)
		goto fail;
	pthread_mutex_lock(&h->lock);
	snap = h->snap;
	/* Marked before it is saved, so that two writers do not both copy;
	 * a failed save takes the mark back. */
	sname = saved_name(&st, path);
	id = st;
	if (seen(h, st.st_dev, st.st_ino, sname, &first)) {
		pthread_mutex_unlock(&h->lock);
		return 0;
	}
	if (first) {
		was = *first;
		xalen = was.xalen;
		if (was.xa && (xa = malloc(xalen)))
			memcpy(xa, was.xa, xalen);
		else if (was.xa)
			r = -ENOMEM;
	}
	snprintf(file, sizeof(file), "%lld-%llu", snap, ++h->vseq);
	pthread_mutex_unlock(&h->lock);
	/* its xattrs (a symlink has no user.* ones) */
	if (!first && !S_ISLNK(st.st_mode))
		r = pfs_hist_xattrs(h, dirfd, name, &xa, &xalen);
	/* Another name of it saved since the snapshot: that is what this name
	 * held too (the change through the other one came after), shared (a
	 * hard link of the version's data: a prune removes each row's own). */
	if (r < 0)
		;
	else if (first && was.file[0])
		r = linkat(h->vdir, was.file, h->vdir, file, 0) < 0 ? -errno : 0;
	else if (!first && S_ISREG(st.st_mode))
		r = copy_data(h, dirfd, name, &st, file);
	else if (!first && S_ISLNK(st.st_mode))
		r = save_link(h, dirfd, name, file);
	if (first)
		st = was.st;
	pthread_mutex_lock(&h->lock);
	if (r == 0 && h->db)
		r = save_row(h, snap, path, &st, file, has_ino(&st, stale), xa, xalen);
	settle(h, &id, sname, &st, file, xa, xalen, r);
	pthread_mutex_unlock(&h->lock);
fail:
	if (r < 0)
		fprintf(stderr, "prismfs: history: cannot save the version of %s before it "
			"changes: %s\n", path, strerror(-r));
	return r;
}
