/* history: the operations of the history store (see history.h). Each
 * change: save the previous version if a snapshot asks for it, record the
 * intent, make the change, say how it went. */
#include "history/history_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

void pfs_hist_obj(struct pfs_history *h, int *dirfd, const char **name)
{
	struct stat st;

	if (*dirfd >= 0 && *name && **name && strspn(*name, "0123456789") == strlen(*name) &&
	    fstat(*dirfd, &st) == 0 && st.st_dev == h->procdev) {
		*dirfd = atoi(*name);
		*name = NULL;
	}
}

/* An object no name of the tree reaches: a file unlinked while open (or a
 * directory removed), changed through its descriptor. No change of the
 * tree (nor of its past): /proc names it by the name it had, which may
 * name another object now, whose version it would be saved and
 * journaled as. */
bool pfs_hist_nameless(struct pfs_history *h, int dirfd, const char *name)
{
	struct stat st;

	pfs_hist_obj(h, &dirfd, &name);
	if (name && *name && strcmp(name, ".") != 0)
		return false;
	return dirfd >= 0 && fstat(dirfd, &st) == 0 && st.st_nlink == 0;
}

int pfs_hist_path(struct pfs_history *h, int dirfd, const char *name, char *buf, size_t len)
{
	return pfs_hist_path_at(h, dirfd, name, buf, len, NULL);
}

int pfs_hist_path_at(struct pfs_history *h, int dirfd, const char *name, char *buf, size_t len,
		     bool *stale)
{
	char proc[40], p[PATH_MAX];
	const char *rel = p;
	ssize_t n;
	int w;

	if (dirfd < 0) { /* AT_FDCWD: a path as it is */
		w = snprintf(buf, len, "%s", name ? name : "");
		return w < 0 || (size_t)w >= len ? -ENAMETOOLONG : 0;
	}
	pfs_hist_obj(h, &dirfd, &name);
	if (name && strcmp(name, ".") == 0) /* the directory itself (a layer's parent) */
		name = NULL;
	if (h->in->ops->path) /* the store knows where its objects are */
		return h->in->ops->path(h->in, dirfd, name, buf, len);
	if (h->procfd >= 0) {
		snprintf(proc, sizeof(proc), "%d", dirfd);
		n = readlinkat(h->procfd, proc, p, sizeof(p) - 1);
	} else {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", dirfd);
		n = readlink(proc, p, sizeof(p) - 1);
	}
	if (n < 0)
		return -errno;
	p[n] = '\0';
	bool gone = n > 10 && strcmp(p + n - 10, " (deleted)") == 0 && !(name && *name);

	if (n > 10 && strcmp(p + n - 10, " (deleted)") == 0)
		p[n - 10] = '\0';
	if (strncmp(p, h->root, h->rootlen) == 0 &&
	    (p[h->rootlen] == '/' || p[h->rootlen] == '\0' || h->rootlen == 1)) {
		rel = p + h->rootlen;
		while (*rel == '/')
			rel++;
	}
	/* the descriptor's own object, and the name /proc gives is gone: a
	 * name it has now (hard links), else none (stale) */
	if (gone && pfs_hist_live_name(h, dirfd, rel, buf, len) == 0)
		return 0;
	if (gone && stale)
		*stale = true;
	w = name && *name ? snprintf(buf, len, "%s%s%s", rel, *rel ? "/" : "", name)
			  : snprintf(buf, len, "%s", rel);
	return w < 0 || (size_t)w >= len ? -ENAMETOOLONG : 0;
}

int pfs_hist_root(struct pfs_history *h)
{
	int fd = h->rootfd0 >= 0 ? fcntl(h->rootfd0, F_DUPFD_CLOEXEC, 0)
				 : open(h->root, O_PATH | O_DIRECTORY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

void pfs_history_temps_outside(struct pfs_store *st)
{
	H(st)->temps_outside = true;
}

/* Is path (as pfs_hist_path gave it) a layered mount's temporary? */
bool pfs_hist_outside(const struct pfs_history *h, const char *path)
{
	return h->temps_outside && path[0] == '/';
}

/* Record kind on (d1, n1) [and (d2, n2)]: the row's seq or -errno. */
static long long rec_by(struct pfs_history *h, const struct pfs_caller *who, const char *kind,
		       int d1, const char *n1, int d2, const char *n2, long long arg)
{
	char *p1 = malloc(PATH_MAX), *p2 = d2 != -1 || n2 ? malloc(PATH_MAX) : NULL;
	long long seq = -ENOMEM;
	bool stale = false;
	int r;

	if (!p1 || ((d2 != -1 || n2) && !p2))
		goto out;
	r = pfs_hist_path_at(h, d1, n1, p1, PATH_MAX, &stale);
	if (r == 0 && p2)
		r = pfs_hist_path(h, d2, n2, p2, PATH_MAX);
	/* a write to a temporary outside the tree (see before), or through
	 * a descriptor whose name is gone (its other names are not known) */
	seq = r < 0 ? r
	      : (pfs_hist_outside(h, p1) || (stale && !p2)) && d2 < 0 ? 0
	      : pfs_hist_db_record(h, who, kind, p1, p2, arg, NULL);
out:
	free(p1);
	free(p2);
	return seq;
}

/* A ref as (dirfd, name): an open fd is its own object. */
void pfs_hist_ref_at(struct pfs_ref r, int *dirfd, const char **name)
{
	*dirfd = r.fd >= 0 ? r.fd : r.dirfd;
	*name = r.fd >= 0 ? NULL : r.name;
}

static int done(struct pfs_history *h, long long seq, int ret)
{
	pfs_hist_db_done(h, seq, ret);
	return ret;
}

/* Save, then record: the seq, 0 when the change is not the tree's (nothing
 * to record: still to be done), or -errno and nothing is to be done. A
 * change wholly outside the tree (a layered mount's work directory: the
 * temporaries of a copy-up, a whiteout being made) is no change of it;
 * what such a temporary becomes is, when it is renamed into the tree
 * (the replay takes an object renamed in from outside as new). */
static long long before_as(struct pfs_history *h, const char *kind, int d1, const char *n1,
			   int d2, const char *n2, long long arg, bool save, char **keep,
			   char *comm)
{
	char *p1 = malloc(PATH_MAX), *p2 = d2 != -1 || n2 ? malloc(PATH_MAX) : NULL;
	long long seq = -ENOMEM;
	bool stale = false;
	int r;

	if (!p1 || ((d2 != -1 || n2) && !p2))
		goto out;
	r = pfs_hist_path_at(h, d1, n1, p1, PATH_MAX, &stale);
	if (r == 0 && p2)
		r = pfs_hist_path(h, d2, n2, p2, PATH_MAX);
	/* before the daemon serves (no journal open yet: it opens after the
	 * fork), the only changes are a layered mount's own bookkeeping on the
	 * upper's root (layer_open.c), no change of the tree's */
	if (r == 0 && (!h->db || (pfs_hist_outside(h, p1) && (d2 < 0 || pfs_hist_outside(h, p2))) ||
		       (!p2 && pfs_hist_nameless(h, d1, n1))))
		seq = 0;
	else if (r == 0 && save && !pfs_hist_outside(h, p1)) /* a temporary has no past */
		r = pfs_hist_save(h, d1, n1);
	/* Through a descriptor whose name was removed while the file lives
	 * on under other names (hard links): /proc gives the removed name,
	 * no name it has now. Its version is saved (by its inode, which
	 * every name's past finds), no row names the removed name. */
	if (r >= 0 && stale && !p2)
		seq = 0;
	if (r < 0)
		seq = r;
	else if (seq != 0)
		seq = pfs_hist_db_record(h, NULL, kind, p1, p2, arg, comm);
	if (seq >= 0 && keep) { /* the caller keeps p1 */
		*keep = p1;
		p1 = NULL;
	}
out:
	free(p1);
	free(p2);
	return seq;
}

static long long before(struct pfs_history *h, const char *kind, int d1, const char *n1,
			int d2, const char *n2, long long arg, bool save)
{
	return before_as(h, kind, d1, n1, d2, n2, arg, save, NULL, NULL);
}

static int h_open(struct pfs_store *st, int dirfd, const char *name, const struct open_how *how)
{
	struct pfs_history *h = H(st);
	int flags = (int)how->flags, fd;
	bool writing = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
	bool exists = true;
	const char *kind;
	char *path = NULL, comm[32] = "";
	unsigned long long gen;
	long long seq;
	struct stat s;

	if ((flags & O_PATH) || (!writing && !(flags & O_CREAT)))
		return h->in->ops->open(h->in, dirfd, name, how);
	/* Also with O_EXCL: a create row of a name that was there, left at 0
	 * by a kill before its outcome (EEXIST) was written, would be settled
	 * as made, and the replay would take the old file for a new one. */
	if (flags & O_CREAT)
		exists = pfs_st_stat(h->in, dirfd, name, &s, AT_SYMLINK_NOFOLLOW) != -ENOENT;
	if (!exists)
		kind = "create";
	else if (!writing)
		return h->in->ops->open(h->in, dirfd, name, how);
	else
		kind = (flags & O_TRUNC) ? "truncate" : "open-write";
	/* The path found now is kept with the open file for its notes (its
	 * creator's setup, its release) while no rename can have changed it:
	 * a readlink each saved. The generation is read before the path. */
	gen = pfs_hist_rgen(h);
	seq = before_as(h, kind, dirfd, name, -1, NULL, flags, exists, writing ? &path : NULL,
			comm);
	if (seq < 0)
		return (int)seq;
	fd = h->in->ops->open(h->in, dirfd, name, how);
	done(h, seq, fd < 0 ? fd : 0);
	if (fd >= 0 && writing)
		pfs_hist_wfd_add(h, fd, !exists, comm, path, gen);
	else
		free(path);
	return fd;
}

static int h_stat(struct pfs_store *st, int dirfd, const char *name, struct stat *out, int flags)
{
	return H(st)->in->ops->stat(H(st)->in, dirfd, name, out, flags);
}

static int h_mkdir(struct pfs_store *st, int dirfd, const char *name, mode_t mode)
{
	struct pfs_history *h = H(st);
	long long seq = before(h, "mkdir", dirfd, name, -1, NULL, mode, false);

	return seq < 0 ? (int)seq : done(h, seq, h->in->ops->mkdir(h->in, dirfd, name, mode));
}

static int h_mknod(struct pfs_store *st, int dirfd, const char *name, mode_t mode, dev_t dev)
{
	struct pfs_history *h = H(st);
	long long seq = before(h, "mknod", dirfd, name, -1, NULL, mode, false);

	return seq < 0 ? (int)seq
		       : done(h, seq, h->in->ops->mknod(h->in, dirfd, name, mode, dev));
}

static int h_symlink(struct pfs_store *st, const char *target, int dirfd, const char *name)
{
	struct pfs_history *h = H(st);
	long long seq = before(h, "symlink", dirfd, name, -1, target, 0, false);

	/* path2 is the target as given: rec() takes it as a path with AT_FDCWD. */
	return seq < 0 ? (int)seq
		       : done(h, seq, h->in->ops->symlink(h->in, target, dirfd, name));
}

static int h_link(struct pfs_store *st, int odirfd, const char *oname, int ndirfd,
		  const char *nname, int flags)
{
	struct pfs_history *h = H(st);
	long long seq = before(h, "link", odirfd, oname, ndirfd, nname, flags, false);

	return seq < 0 ? (int)seq
		       : done(h, seq, h->in->ops->link(h->in, odirfd, oname, ndirfd, nname,
						       flags));
}

static int h_unlink(struct pfs_store *st, int dirfd, const char *name, int flags)
{
	struct pfs_history *h = H(st);
	long long seq = before(h, (flags & AT_REMOVEDIR) ? "rmdir" : "unlink", dirfd, name, -1,
			       NULL, flags, true);
	struct stat s;
	bool linked;
	int r;

	if (seq < 0)
		return (int)seq;
	/* A name of a file with other names, removed while files are open
	 * for writing: the paths they keep may be that name (see rgen). */
	linked = !(flags & AT_REMOVEDIR) && __atomic_load_n(&h->nwfds, __ATOMIC_RELAXED) &&
		 pfs_st_stat(h->in, dirfd, name, &s, AT_SYMLINK_NOFOLLOW) == 0 &&
		 S_ISREG(s.st_mode) && s.st_nlink > 1;
	r = h->in->ops->unlink(h->in, dirfd, name, flags);
	if (linked)
		__atomic_add_fetch(&h->rgen, 1, __ATOMIC_RELEASE);
	return done(h, seq, r);
}

static int h_rename(struct pfs_store *st, int odirfd, const char *oname, int ndirfd,
		    const char *nname, unsigned flags)
{
	struct pfs_history *h = H(st);
	struct stat s;
	long long seq;
	int r;

	/* What a rename replaces (or, exchanged, moves) is changed too. */
	r = pfs_st_stat(h->in, ndirfd, nname, &s, AT_SYMLINK_NOFOLLOW);
	r = r == 0 ? pfs_hist_save(h, ndirfd, nname) : 0;
	if (r < 0)
		return r;
	seq = before(h, "rename", odirfd, oname, ndirfd, nname, flags, true);
	if (seq < 0)
		return (int)seq;
	r = h->in->ops->rename(h->in, odirfd, oname, ndirfd, nname, flags);
	/* after it is made: a path found before now may be stale (rgen) */
	__atomic_add_fetch(&h->rgen, 1, __ATOMIC_RELEASE);
	return done(h, seq, r);
}

static ssize_t h_readlink(struct pfs_store *st, int dirfd, const char *name, char *buf,
			  size_t len)
{
	return H(st)->in->ops->readlink(H(st)->in, dirfd, name, buf, len);
}

static int h_chmod(struct pfs_store *st, struct pfs_ref r, mode_t mode)
{
	struct pfs_history *h = H(st);
	const char *n;
	int d;
	long long seq;
	struct hcreator c;

	if (pfs_hist_by_creator(h, r, &c)) {
		int ret = pfs_hist_creator_before(h, r, &c);

		return ret < 0 ? ret
			       : pfs_hist_creator_after(h, &c, "chmod", mode,
							 h->in->ops->chmod(h->in, r, mode));
	}
	pfs_hist_ref_at(r, &d, &n);
	seq = before(h, "chmod", d, n, -1, NULL, mode, true);
	return seq < 0 ? (int)seq : done(h, seq, h->in->ops->chmod(h->in, r, mode));
}

static int h_chown(struct pfs_store *st, struct pfs_ref r, uid_t uid, gid_t gid)
{
	struct pfs_history *h = H(st);
	const char *n;
	int d;
	long long seq;
	struct hcreator c;

	/* arg: uid in the high half, gid in the low; -1 each when left */
	long long arg = (long long)(((unsigned long long)uid << 32) | (unsigned)gid);

	if (pfs_hist_by_creator(h, r, &c)) {
		int ret = pfs_hist_creator_before(h, r, &c);

		return ret < 0 ? ret
			       : pfs_hist_creator_after(h, &c, "chown", arg,
							 h->in->ops->chown(h->in, r, uid, gid));
	}
	pfs_hist_ref_at(r, &d, &n);
	seq = before(h, "chown", d, n, -1, NULL, arg, true);
	return seq < 0 ? (int)seq : done(h, seq, h->in->ops->chown(h->in, r, uid, gid));
}

static int h_utimes(struct pfs_store *st, struct pfs_ref r, const struct timespec ts[2])
{
	struct pfs_history *h = H(st);
	const char *n;
	int d;
	long long seq;
	struct hcreator c;

	if (pfs_hist_by_creator(h, r, &c)) {
		int ret = pfs_hist_creator_before(h, r, &c);

		return ret < 0 ? ret
			       : pfs_hist_creator_after(h, &c, "utimes", 0,
							 h->in->ops->utimes(h->in, r, ts));
	}
	pfs_hist_ref_at(r, &d, &n);
	seq = before(h, "utimes", d, n, -1, NULL, 0, true);
	return seq < 0 ? (int)seq : done(h, seq, h->in->ops->utimes(h->in, r, ts));
}

static int h_truncate(struct pfs_store *st, int fd, off_t len)
{
	struct pfs_history *h = H(st);
	long long seq = before(h, "truncate", fd, NULL, -1, NULL, len, true);

	return seq < 0 ? (int)seq : done(h, seq, h->in->ops->truncate(h->in, fd, len));
}

static ssize_t h_getxattr(struct pfs_store *st, struct pfs_ref r, const char *name, void *buf,
			  size_t len)
{
	return H(st)->in->ops->getxattr(H(st)->in, r, name, buf, len);
}

static int h_setxattr(struct pfs_store *st, struct pfs_ref r, const char *name, const void *val,
		      size_t len, int flags)
{
	struct pfs_history *h = H(st);
	const char *n;
	int d;
	long long seq;

	pfs_hist_ref_at(r, &d, &n);
	seq = before(h, "setxattr", d, n, -1, name, (long long)len, true);
	return seq < 0 ? (int)seq
		       : done(h, seq, h->in->ops->setxattr(h->in, r, name, val, len, flags));
}

static ssize_t h_listxattr(struct pfs_store *st, struct pfs_ref r, char *buf, size_t len)
{
	return H(st)->in->ops->listxattr(H(st)->in, r, buf, len);
}

static int h_removexattr(struct pfs_store *st, struct pfs_ref r, const char *name)
{
	struct pfs_history *h = H(st);
	const char *n;
	int d;
	long long seq;

	pfs_hist_ref_at(r, &d, &n);
	seq = before(h, "removexattr", d, n, -1, name, 0, true);
	return seq < 0 ? (int)seq : done(h, seq, h->in->ops->removexattr(h->in, r, name));
}

/* When a file open for writing says what it wrote: at an fsync (a row
 * of its own, before the data is durable), at a close (FLUSH: a note),
 * at its release (a note, and the writer is forgotten). */
enum wnote { WN_SYNC, WN_CLOSE, WN_RELEASE };

/* The data of a file open for writing changed unseen (passthrough, or the
 * view's pwrite): say so now, after the fact; its open is in the journal. */
static int note_written(struct pfs_history *h, int fd, enum wnote when)
{
	bool forget = when == WN_RELEASE;
	struct pfs_caller who = pfs_caller_get();
	char *p, comm[32];
	long long seq;
	bool gone;

	if (!pfs_hist_wfd_changed(h, fd, forget, &who, &p, comm, &gone))
		return 0;
	if (gone) { /* unlinked while open: no change of the tree */
		free(p);
		return 0;
	}
	if (when == WN_SYNC) { /* the row before the data is made durable */
		seq = !p ? rec_by(h, NULL, "write", fd, NULL, -1, NULL, 0)
		      : pfs_hist_outside(h, p) ? 0
		      : pfs_hist_db_record(h, NULL, "write", p, NULL, 0, NULL);
		free(p);
		return seq < 0 ? (int)seq : done(h, seq, 0);
	}
	/* At the close, after the fact (the open's row came before any byte
	 * changed): a note that rides in the next commit, so that it costs
	 * no commit of its own. At the close (FLUSH, which close(2) waits
	 * for), not only at RELEASE, which reaches the daemon after close(2)
	 * returned — after the writer's next call, maybe a rename, whose new
	 * name the note would then wrongly take. RELEASE notes only what
	 * changed since (a shared mapping's writes after the close). The
	 * request comes from no process: the opener's, named as it was when
	 * it opened (it may be gone now). Its path is the one found at the
	 * open unless a rename came since. */
	bool stale = false;

	if (!p && (p = malloc(PATH_MAX)) &&
	    (pfs_hist_path_at(h, fd, NULL, p, PATH_MAX, &stale) < 0 || stale)) {
		free(p);
		p = NULL;
	}
	if (p && !pfs_hist_outside(h, p))
		pfs_hist_db_note_as(h, &who, comm[0] ? comm : NULL, "write", p, 0);
	free(p);
	return 0;
}

static int h_sync(struct pfs_store *st, int fd, bool data_only)
{
	struct pfs_history *h = H(st);
	int r = note_written(h, fd, WN_SYNC);

	return r < 0 ? r : h->in->ops->sync(h->in, fd, data_only);
}

static int h_copy(struct pfs_store *st, int dst, int src, off_t size, bool clone,
		  pfs_st_tick *tick, void *arg)
{
	struct pfs_history *h = H(st);
	long long seq = before(h, "copy", dst, NULL, src, NULL, size, false);

	return seq < 0 ? (int)seq
		       : done(h, seq, h->in->ops->copy(h->in, dst, src, size, clone, tick, arg));
}

static void h_release(struct pfs_store *st, int fd)
{
	struct pfs_history *h = H(st);

	/* Too late to fail the close: the open-write row already covers it. */
	note_written(h, fd, WN_RELEASE);
	pfs_st_release(h->in, fd);
}

/* A writer's close(2): no row of its own (the open for writing has one; a
 * close is no change), but the end of its creator's setup
 * (pfs_hist_wfd_closed) and the note of what it wrote; then
 * what a store below may need of it (the memory cache bounds its use by
 * writers). Asked for on every writer, at one FLUSH request per close. */
static int h_flush(struct pfs_store *st, int fd)
{
	pfs_hist_wfd_closed(H(st), fd);
	note_written(H(st), fd, WN_CLOSE);
	return pfs_st_flush(H(st)->in, fd);
}

static bool h_direct_ok(struct pfs_store *st, int fd, int flags)
{
	return pfs_st_direct_ok(H(st)->in, fd, flags);
}

static int h_write_prep(struct pfs_store *st, int fd, off_t off, size_t len, int failed)
{
	return pfs_st_write_prep(H(st)->in, fd, off, len, failed);
}

static int h_fallocate(struct pfs_store *st, int fd, int mode, off_t off, off_t len)
{
	return H(st)->in->ops->fallocate(H(st)->in, fd, mode, off, len);
}

static int h_path(struct pfs_store *st, int dirfd, const char *name, char *buf, size_t len)
{
	return H(st)->in->ops->path(H(st)->in, dirfd, name, buf, len);
}

static void h_destroy(struct pfs_store *st)
{
	struct pfs_history *h = H(st);

	pfs_hist_keep_stop(h);
	pfs_hist_db_ck_stop(h);
	pfs_hist_browse_fini(h);
	pfs_hist_db_close(h);
	pfs_hist_saved_clear(h);
	pfs_hist_wfd_free(h);
	if (h->vdir >= 0)
		close(h->vdir);
	if (h->procfd >= 0)
		close(h->procfd);
	if (h->lockfd >= 0)
		close(h->lockfd);
	if (h->rootfd0 >= 0)
		close(h->rootfd0);
	pfs_store_free(h->in);
	pfs_hist_db_fini(h);
	pthread_mutex_destroy(&h->lock);
	pthread_mutex_destroy(&h->cp_mu);
	pthread_cond_destroy(&h->cp_cv);
	free(h);
}

static const struct pfs_store_ops history_ops = {
	.open = h_open,
	.stat = h_stat,
	.mkdir = h_mkdir,
	.mknod = h_mknod,
	.symlink = h_symlink,
	.link = h_link,
	.unlink = h_unlink,
	.rename = h_rename,
	.readlink = h_readlink,
	.chmod = h_chmod,
	.chown = h_chown,
	.utimes = h_utimes,
	.truncate = h_truncate,
	.getxattr = h_getxattr,
	.setxattr = h_setxattr,
	.listxattr = h_listxattr,
	.removexattr = h_removexattr,
	.sync = h_sync,
	.copy = h_copy,
	.release = h_release,
	.destroy = h_destroy,
};

bool pfs_history_is(const struct pfs_store *st)
{
	return st && st->ops->destroy == h_destroy;
}

const char *pfs_history_dir(const struct pfs_store *st)
{
	return H(st)->dir;
}

/* dir's canonical name, made or not (its parent must exist). */
static char *canon_dir(const char *dir)
{
	char *c = realpath(dir, NULL), *copy, *slash, *parent, *out = NULL;

	if (c || errno != ENOENT)
		return c;
	copy = strdup(dir);
	if (!copy)
		return NULL;
	while (strlen(copy) > 1 && copy[strlen(copy) - 1] == '/')
		copy[strlen(copy) - 1] = '\0';
	slash = strrchr(copy, '/');
	if (slash)
		*slash = '\0';
	parent = realpath(slash ? (*copy ? copy : "/") : ".", NULL);
	if (parent && asprintf(&out, "%s/%s", strcmp(parent, "/") ? parent : "",
			       slash ? slash + 1 : copy) < 0)
		out = NULL;
	free(parent);
	free(copy);
	return out;
}

int pfs_history_new(struct pfs_store **out, struct pfs_store *inner, const char *rootpath,
		    int rootfd, const char *dir, char *err, size_t errlen)
{
	struct pfs_history *h = calloc(1, sizeof(*h));
	struct stat s;
	char *canon = NULL;
	size_t rl = strlen(rootpath);
	bool made = false;

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	h->vdir = -1;
	h->lockfd = -1;
	h->rootfd0 = -1;
	h->procfd = -1;
	pfs_hist_policy_init(&h->pol);
	pthread_mutex_init(&h->cp_mu, NULL);
	pthread_cond_init(&h->cp_cv, NULL);
	pfs_hist_db_init(h);
	if (stat("/proc/self/fd", &s) < 0) {
		snprintf(err, errlen, "history needs /proc: %s", strerror(errno));
		goto fail;
	}
	h->procdev = s.st_dev;
	canon = canon_dir(dir);
	if (!canon) {
		snprintf(err, errlen, "history %s: %s", dir,
			 errno == ENOENT ? "its parent does not exist" : strerror(errno));
		goto fail;
	}
	if (strlen(canon) >= sizeof(h->dir) || rl >= sizeof(h->root)) {
		snprintf(err, errlen, "history %s: path too long", dir);
		goto fail;
	}
	if (strcmp(rootpath, "/") == 0 ||
	    (strncmp(canon, rootpath, rl) == 0 && (canon[rl] == '/' || canon[rl] == '\0'))) {
		snprintf(err, errlen, "history %s cannot be inside the source %s", dir, rootpath);
		goto fail;
	}
	if (mkdir(canon, 0700) == 0) {
		made = true;
	} else if (errno != EEXIST || stat(canon, &s) < 0 || !S_ISDIR(s.st_mode)) {
		snprintf(err, errlen, "history %s: %s", dir,
			 errno == EEXIST ? "not a directory" : strerror(errno));
		goto fail;
	}
	memcpy(h->dir, canon, strlen(canon) + 1);
	memcpy(h->root, rootpath, rl + 1);
	h->rootlen = rl;
	free(canon);
	canon = NULL;
	pthread_mutex_init(&h->lock, NULL);
	/* One daemon per DIR: the lock goes with the daemon across its fork
	 * (the same open file) and with it when it dies. */
	{
		char lp[PATH_MAX + 16];

		snprintf(lp, sizeof(lp), "%s/lock", h->dir);
		h->lockfd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (h->lockfd < 0 || flock(h->lockfd, LOCK_EX | LOCK_NB) < 0) {
			snprintf(err, errlen, "history %s: %s", dir,
				 errno == EWOULDBLOCK ? "another mount uses it" : strerror(errno));
			goto fail_lock;
		}
	}
	/* The database opens now to say early what is wrong, and again in
	 * the process that serves. */
	if (pfs_hist_db_open(h, err, errlen) < 0)
		goto fail_lock;
	pfs_hist_db_close(h);
	if (rootfd >= 0 && (h->rootfd0 = fcntl(rootfd, F_DUPFD_CLOEXEC, 0)) < 0) {
		snprintf(err, errlen, "history %s: %s", dir, strerror(errno));
		goto fail_lock;
	}
	/* The optional operations of the store below, and only those (flush
	 * is the history's own: the end of a creator's setup). */
	h->ops = history_ops;
	h->ops.flush = h_flush;
	if (inner->ops->direct_ok)
		h->ops.direct_ok = h_direct_ok;
	if (inner->ops->write_prep)
		h->ops.write_prep = h_write_prep;
	if (inner->ops->fallocate)
		h->ops.fallocate = h_fallocate;
	if (inner->ops->path)
		h->ops.path = h_path;
	h->base.ops = &h->ops;
	h->base.name = "history";
	h->in = inner;
	pfs_hist_browse_init(h);
	*out = &h->base;
	return 0;
fail_lock:
	pthread_mutex_destroy(&h->lock);
	if (made) { /* bad input changes nothing */
		char p[PATH_MAX + 32];

		snprintf(p, sizeof(p), "%s/history.db", h->dir);
		unlink(p);
		snprintf(p, sizeof(p), "%s/lock", h->dir);
		unlink(p);
		rmdir(h->dir);
	}
	if (h->lockfd >= 0)
		close(h->lockfd);
fail:
	free(canon);
	pfs_hist_db_fini(h);
	pthread_mutex_destroy(&h->cp_mu);
	pthread_cond_destroy(&h->cp_cv);
	free(h);
	return -EINVAL;
}

int pfs_history_start(struct pfs_store *st)
{
	struct pfs_history *h = H(st);
	char err[PATH_MAX + 128], vpath[PATH_MAX + 16];
	int r;

	r = pfs_hist_db_open(h, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "prismfs: %s\n", err);
		return r;
	}
	/* Here, in the process that serves: /proc/self is resolved at open.
	 * Without it, paths are read through "/proc/self/fd/N" as before. */
	if (h->procfd < 0)
		h->procfd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
	/* Rows a dead daemon left at 0 were never finished: those the tree
	 * shows made count as made; the others say so ("interrupted"), so
	 * that 0 means "in flight" on a live mount. */
	if (pfs_hist_settle(h) < 0 ||
	    sqlite3_exec(h->db, "UPDATE changes SET state = 2 WHERE state = 0", NULL, NULL,
			 NULL) != SQLITE_OK) {
		fprintf(stderr, "prismfs: history: %s\n", sqlite3_errmsg(h->db));
		return -EIO;
	}
	snprintf(vpath, sizeof(vpath), "%s/versions", h->dir);
	if (mkdir(vpath, 0700) < 0 && errno != EEXIST)
		return -errno;
	h->vdir = open(vpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (h->vdir < 0)
		return -errno;
	r = pfs_hist_db_ck_start(h);
	if (r == 0)
		r = pfs_hist_sweep(h);
	return r < 0 ? r : pfs_hist_keep_start(h);
}
