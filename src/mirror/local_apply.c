/* local_apply: how the write-back queue's ops (mirror/wbop.h) are applied
 * to a local mirror (local.h says how: idempotent, beneath the root,
 * data by temporary and rename, conflicts kept beside). */
#include "mirror/local_int.h"
#include "store/meta.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int fail(char *err, size_t errlen, int ret, const char *what, const char *path)
{
	snprintf(err, errlen, "%s %s on the mirror: %s", what, path, strerror(-ret));
	return ret;
}

/* Give a new object the owner the op asks for. The mirror may refuse to
 * change owners (an unprivileged daemon): then the object keeps the
 * daemon's, as cp without -p would. */
static int own(struct pfs_mirror_local *m, const struct pfs_wb_op *op, int dfd, const char *name)
{
	int ret;

	if (!(op->mask & PFS_WB_OWNER))
		return 0;
	ret = pfs_st_chown(m->st, pfs_ref_at(dfd, name), op->uid, op->gid);
	return ret == -EPERM ? 0 : ret;
}

/* fd is the file op (a CREATE) made: say so (wbop.h: made_ino), before it
 * gets its name. */
static void made(struct pfs_wb_op *op, int fd)
{
	struct statx sx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_INO | STATX_BTIME, &sx) < 0)
		return;
	op->made_ino = (int64_t)sx.stx_ino;
	op->made_bt = sx.stx_mask & STATX_BTIME
			      ? (int64_t)sx.stx_btime.tv_sec * 1000000000 + sx.stx_btime.tv_nsec
			      : 0;
	if (op->made_fn)
		op->made_fn(op->made_arg, op);
}

/* Does name hold the regular file (ino, birth time bt) an earlier attempt
 * of a CREATE made? */
static bool made_before(int dfd, const char *name, int64_t ino, int64_t bt)
{
	struct statx sx;

	if (!ino || statx(dfd, name, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_INO | STATX_BTIME,
			  &sx) < 0)
		return false;
	if (!S_ISREG(sx.stx_mode) || (int64_t)sx.stx_ino != ino)
		return false;
	return !bt || !(sx.stx_mask & STATX_BTIME) ||
	       (int64_t)sx.stx_btime.tv_sec * 1000000000 + sx.stx_btime.tv_nsec == bt;
}

/* A CREATE's empty file: made unnamed (O_TMPFILE) and known (made) before
 * it is linked in under name, so that a name found taken, now or at a
 * replay, is told apart from this op's own work. Without O_TMPFILE: made
 * under its name and known a moment later (a kill between the two makes
 * its replay see a conflict: both kept, nothing lost). */
static int create_file(struct pfs_mirror_local *m, struct pfs_wb_op *op, int dfd,
		       const char *name)
{
	char proc[32];
	int fd, ret;

	fd = pfs_st_openat(m->st, dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, op->mode & 07777);
	if (fd == -EOPNOTSUPP || fd == -EISDIR || fd == -EINVAL) {
		fd = pfs_st_openat(m->st, dfd, name,
				   O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				   op->mode & 07777);
		if (fd < 0)
			return fd;
		made(op, fd);
		close(fd);
		return 0;
	}
	if (fd < 0)
		return fd;
	made(op, fd);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	ret = pfs_st_link(m->st, AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW);
	close(fd);
	return ret;
}

/* A CREATE whose name was made on the mirror behind the mount: that file
 * stays; the cache's goes beside it, as NAME.prismfs-conflict-STAMP, and
 * so do its later write-backs (the key's conflict name, as apply_data
 * keeps a changed file's). */
static int create_aside(struct pfs_mirror_local *m, struct pfs_wb_op *op, int dfd,
			const char *name)
{
	char *cname = pfs_mirror_conflict_name(name);
	struct base_ent *e;
	int fd, ret;

	if (!cname)
		return -ENOMEM;
	if (!op->key) { /* nothing to send its data after it: say so, retry */
		free(cname);
		return -EEXIST;
	}
	fd = pfs_st_openat(m->st, dfd, cname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			   op->mode & 07777);
	ret = fd == -EEXIST ? 0 : fd < 0 ? fd : 0;
	if (fd >= 0)
		close(fd);
	if (ret == 0)
		ret = own(m, op, dfd, cname);
	if (ret < 0) {
		free(cname);
		return ret;
	}
	pthread_mutex_lock(&m->lock);
	e = pfs_basetab_make(&m->bt, op->key, sizeof(*e));
	if (e && !e->h.conflict) {
		e->h.conflict = cname;
		cname = NULL;
		m->conflicts++;
		snprintf(m->last_conflict, sizeof(m->last_conflict),
			 "%s was made on the mirror behind the mount; the cache's version is "
			 "kept as %s",
			 op->path, e->h.conflict);
	}
	pthread_mutex_unlock(&m->lock);
	free(cname);
	return e ? 0 : -ENOMEM;
}

static int apply_make(struct pfs_mirror_local *m, struct pfs_wb_op *op, int dfd,
		      const char *name)
{
	int64_t prev_ino = op->made_ino, prev_bt = op->made_bt;
	struct stat st;
	int ret;

	switch (op->kind) {
	case PFS_WB_MKDIR:
		ret = pfs_st_mkdir(m->st, dfd, name, op->mode & 07777);
		break;
	case PFS_WB_CREATE:
		ret = create_file(m, op, dfd, name);
		if (ret != -EEXIST)
			break;
		/* Taken: by this op's own earlier attempt (a retry, a replay),
		 * or by a file made behind the mount, never to be written over. */
		if (!made_before(dfd, name, prev_ino, prev_bt))
			return create_aside(m, op, dfd, name);
		op->made_ino = prev_ino; /* the file that is there, not the one just dropped */
		op->made_bt = prev_bt;
		if (op->made_fn)
			op->made_fn(op->made_arg, op);
		ret = 0;
		break;
	case PFS_WB_SYMLINK:
		ret = pfs_st_symlink(m->st, op->target, dfd, name);
		break;
	default: /* PFS_WB_MKNOD */
		ret = pfs_st_mknod(m->st, dfd, name, op->mode, op->rdev);
		break;
	}
	if (ret == -EEXIST) {
		/* Made before (a replay): done if it is the same kind. */
		if (pfs_st_stat(m->st, dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    (st.st_mode & S_IFMT) ==
			    (op->kind == PFS_WB_MKDIR     ? S_IFDIR
			     : op->kind == PFS_WB_CREATE  ? S_IFREG
			     : op->kind == PFS_WB_SYMLINK ? S_IFLNK
							  : (op->mode & S_IFMT)))
			return 0;
		return -EEXIST;
	}
	if (ret < 0)
		return ret;
	ret = own(m, op, dfd, name);
	if (ret == 0 && op->key && op->kind == PFS_WB_CREATE &&
	    pfs_st_stat(m->st, dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		pfs_local_set_base(m, op->key, &st);
	return ret;
}

static int apply_attr(struct pfs_mirror_local *m, struct pfs_wb_op *op, int dfd,
		      const char *name)
{
	struct pfs_ref r = pfs_ref_at(dfd, name);
	struct stat before;
	bool had = pfs_st_stat(m->st, dfd, name, &before, AT_SYMLINK_NOFOLLOW) == 0;
	int ret = 0;

	if (op->mask & PFS_WB_OWNER) {
		ret = pfs_st_chown(m->st, r, op->uid, op->gid);
		if (ret == -EPERM)
			ret = 0;
	}
	/* A symlink has no mode of its own: chmod by name would follow it
	 * (and fail on a dangling one, or change its target). */
	if (ret == 0 && (op->mask & PFS_WB_MODE) && !(had && S_ISLNK(before.st_mode)))
		ret = pfs_st_chmod(m->st, r, op->mode & 07777);
	if (ret == 0 && (op->mask & (PFS_WB_ATIME | PFS_WB_MTIME))) {
		struct timespec ts[2] = {op->atime, op->mtime};

		if (!(op->mask & PFS_WB_ATIME))
			ts[0].tv_nsec = UTIME_OMIT;
		if (!(op->mask & PFS_WB_MTIME))
			ts[1].tv_nsec = UTIME_OMIT;
		ret = pfs_st_utimes(m->st, r, ts);
	}
	if (ret == 0)
		pfs_local_refresh_base(m, op->key, dfd, name, had ? &before : NULL);
	return ret;
}

static int apply_xattr(struct pfs_mirror_local *m, struct pfs_wb_op *op, int dfd,
		       const char *name)
{
	struct pfs_ref r = pfs_ref_at(dfd, name);
	struct stat before;
	bool had = pfs_st_stat(m->st, dfd, name, &before, AT_SYMLINK_NOFOLLOW) == 0;
	int ret;

	if (op->kind == PFS_WB_SETXATTR) {
		ret = pfs_st_setxattr(m->st, r, op->xname, op->xval, op->xlen, 0);
	} else {
		ret = pfs_st_removexattr(m->st, r, op->xname);
		if (ret == -ENODATA)
			ret = 0;
	}
	if (ret == 0)
		pfs_local_refresh_base(m, op->key, dfd, name, had ? &before : NULL);
	return ret;
}

/* chmod, chown, utimes and xattrs by path act on the view's file: its
 * conflict copy once it has one. A file changed behind the mount that the
 * view never saw is left as it is: the view's change is not applied to the
 * other party's file but said as a conflict (should the view write the
 * file, its data goes beside, with the view's mode and times). */
static int apply_meta(struct pfs_mirror_local *m, struct pfs_wb_op *op, int dfd,
		      const char *name)
{
	char *aside;
	bool changed;
	int ret = pfs_local_view_file(m, op->key, NULL, dfd, name, &aside, &changed);

	if (ret < 0)
		return ret;
	if (changed) {
		pfs_local_note(m, "%s changed on the mirror behind the mount; the view's %s is not applied "
		     "to it", op->path, pfs_wb_kind_name(op->kind));
		return 0;
	}
	if (op->kind == PFS_WB_ATTR)
		ret = apply_attr(m, op, dfd, aside ? aside : name);
	else
		ret = apply_xattr(m, op, dfd, aside ? aside : name);
	free(aside);
	return ret;
}

/* An unlink of the view's file removes the view's file: its conflict copy
 * once it has one (name is the other party's), never a file changed behind
 * the mount that the view never saw (kept, said as a conflict). */
static int apply_unlink(struct pfs_mirror_local *m, struct pfs_wb_op *op, int dfd,
			const char *name)
{
	char *aside;
	bool changed;
	int ret = pfs_local_view_file(m, op->key, &op->base, dfd, name, &aside, &changed);

	if (ret < 0)
		return ret;
	if (changed)
		pfs_local_note(m, "%s changed on the mirror behind the mount; removed in the view, the "
		     "mirror's version is kept", op->path);
	else
		ret = pfs_st_unlink(m->st, dfd, aside ? aside : name, 0);
	if (ret == -ENOENT)
		ret = 0;
	free(aside);
	if (ret == 0 && op->key) { /* its last name (cache.c): the key may be reused */
		pthread_mutex_lock(&m->lock);
		pfs_basetab_forget(&m->bt, op->key);
		pthread_mutex_unlock(&m->lock);
	}
	return ret;
}

/* Copy the cache file's data, mode and times into the open file fd. */
/* How fd gets the data: over what it holds; fresh (made just now, empty:
 * a truncation would only cost, and on ext4 make its close start the
 * file's write-out); or moved (fd is the data file itself, linked in:
 * move_in). */
enum fill_how { FILL_OVER, FILL_FRESH, FILL_MOVED };

static int fill_data(struct pfs_mirror_local *m, int fd, const struct pfs_wb_op *op,
		     const struct stat *sst, enum fill_how how)
{
	int src = op->datafd >= 0 ? op->datafd : op->fd;
	int ret = 0;

	if (how != FILL_FRESH)
		ret = pfs_st_truncate(m->st, fd, how == FILL_MOVED ? sst->st_size : 0);
	if (ret == 0 && how != FILL_MOVED)
		ret = pfs_st_copy(m->st, fd, src, sst->st_size, false, NULL, NULL);
	return ret;
}

/* Mode and times as the cache has them: after any change of owner (a
 * chown clears the set-id bits). */
static int fill_mode_times(struct pfs_mirror_local *m, int fd, const struct stat *sst)
{
	struct timespec ts[2] = {sst->st_atim, sst->st_mtim};
	int ret = pfs_st_chmod(m->st, pfs_ref_fd(fd), sst->st_mode & 07777);

	if (ret == 0)
		ret = pfs_st_utimes(m->st, pfs_ref_fd(fd), ts);
	return ret;
}

/* The file src (a data file without a name on the mirror's filesystem,
 * cache_spill.c) linked in as tmp in dfd, opened for writing; -errno (a
 * file that cannot be linked: elsewhere, or linked once already) to copy
 * it instead. */
static int move_in(struct pfs_mirror_local *m, int src, int dfd, const char *tmp)
{
	char name[16];
	int pfd, ret;

	pfd = pfs_st_openat(m->st, AT_FDCWD, "/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	if (pfd < 0)
		return pfd;
	snprintf(name, sizeof(name), "%d", src);
	ret = pfs_st_link(m->st, pfd, name, dfd, tmp, AT_SYMLINK_FOLLOW);
	close(pfd);
	if (ret < 0)
		return ret;
	ret = pfs_st_openat(m->st, dfd, tmp, O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (ret < 0)
		pfs_st_unlink(m->st, dfd, tmp, 0);
	return ret;
}

/* Does the regular file name (cur) hold exactly the data of op's cache
 * file (sst)? Read only where the sizes match (a rare path: a base that
 * no longer holds). */
static bool holds(struct pfs_mirror_local *m, int dfd, const char *name, const struct stat *cur,
		  const struct pfs_wb_op *op, const struct stat *sst)
{
	int src = op->datafd >= 0 ? op->datafd : op->fd, fd;
	char a[65536], b[65536];
	off_t off = 0;
	bool same = true;

	if (!S_ISREG(cur->st_mode) || cur->st_size != sst->st_size)
		return false;
	fd = pfs_st_openat(m->st, dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return false;
	while (same && off < sst->st_size) {
		ssize_t na = pread(fd, a, sizeof(a), off), nb = pread(src, b, sizeof(b), off);

		same = na > 0 && na == nb && memcmp(a, b, (size_t)na) == 0;
		off += na > 0 ? na : 0;
	}
	close(fd);
	return same;
}

static int apply_data(struct pfs_mirror_local *m, struct pfs_wb_op *op, int dfd,
		      const char *name)
{
	char tmp[64], *cname = NULL;
	const char *target = name;
	struct base_ent *e;
	struct stat sst, cur;
	bool have_cur, conflict = false;
	int fd = -1, ret;

	if (op->fd < 0 || fstat(op->fd, &sst) < 0)
		return -EBADF;
	ret = pfs_st_stat(m->st, dfd, name, &cur, AT_SYMLINK_NOFOLLOW);
	if (ret < 0 && ret != -ENOENT)
		return ret;
	have_cur = ret == 0;
	pthread_mutex_lock(&m->lock);
	e = op->key ? pfs_basetab_get(&m->bt, op->key) : NULL;
	if (e && e->h.conflict) {
		cname = strdup(e->h.conflict);
		conflict = true;
	} else if (e && have_cur && !pfs_local_same_base(&e->base, &cur)) {
		conflict = true;
	} else if (e && !have_cur) {
		conflict = true; /* removed behind the mount: keep ours aside */
	}
	pthread_mutex_unlock(&m->lock);
	/* Changed, but to exactly the cache's data: this write done before
	 * (a journal replayed after a kill between the write and its
	 * record's removal), or the same change made twice — no conflict. */
	if (conflict && !cname && have_cur && holds(m, dfd, name, &cur, op, &sst))
		conflict = false;
	if (conflict) {
		if (!cname)
			cname = pfs_mirror_conflict_name(name);
		if (!cname)
			return -ENOMEM;
		target = cname;
		ret = pfs_st_stat(m->st, dfd, target, &cur, AT_SYMLINK_NOFOLLOW);
		have_cur = ret == 0;
	}
	if (have_cur && !S_ISREG(cur.st_mode)) {
		ret = -EEXIST;
		goto out;
	}
	if (have_cur && cur.st_nlink > 1) {
		/* Other names share it: rewrite it where it is. */
		fd = pfs_st_openat(m->st, dfd, target, O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0);
		if (fd < 0) {
			ret = fd;
			goto out;
		}
		ret = fill_data(m, fd, op, &sst, FILL_OVER);
		if (ret == 0)
			ret = fill_mode_times(m, fd, &sst);
		goto done;
	}
	snprintf(tmp, sizeof(tmp), ".prismfs-wb.%d.%lu", (int)getpid(), ++m->tmpseq);
	fd = (op->flags & PFS_WB_DATA_MOVE) && op->datafd >= 0 ? move_in(m, op->datafd, dfd, tmp)
								: -1;
	if (fd >= 0) {
		ret = fill_data(m, fd, op, &sst, FILL_MOVED);
	} else {
		fd = pfs_st_openat(m->st, dfd, tmp,
				   O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			ret = fd;
			goto out;
		}
		ret = fill_data(m, fd, op, &sst, FILL_FRESH);
	}
	if (ret == 0 && have_cur) {
		const char *what;

		/* Owner and xattrs as the file had them; mode and times are
		 * the cache's. */
		ret = pfs_meta_copy(m->st, pfs_ref_fd(fd), pfs_ref_at(dfd, target), &cur,
				    PFS_META_NO_TIMES, &what);
	} else if (ret == 0) {
		ret = pfs_st_chown(m->st, pfs_ref_fd(fd), sst.st_uid, sst.st_gid);
		if (ret == -EPERM)
			ret = 0;
	}
	if (ret == 0)
		ret = fill_mode_times(m, fd, &sst);
	if (ret == 0)
		pfs_crashpoint("wb-data-tmp"); /* tests: written, not yet renamed */
	if (ret == 0)
		ret = pfs_st_rename(m->st, dfd, tmp, dfd, target, 0);
	/* (a rename between two names of one file leaves both) */
	if (ret < 0 || (op->flags & PFS_WB_DATA_MOVE))
		pfs_st_unlink(m->st, dfd, tmp, 0);
done:
	if (ret == 0 && pfs_st_stat(m->st, dfd, target, &cur, AT_SYMLINK_NOFOLLOW) == 0 &&
	    op->key) {
		pthread_mutex_lock(&m->lock);
		e = pfs_basetab_make(&m->bt, op->key, sizeof(*e));
		if (e && !conflict)
			pfs_local_to_base(&cur, &e->base);
		if (e && conflict && !e->h.conflict) {
			e->h.conflict = cname;
			cname = NULL;
			m->conflicts++;
			snprintf(m->last_conflict, sizeof(m->last_conflict),
				 "%s changed on the mirror; the cache's version is kept as %s",
				 op->path, e->h.conflict);
		}
		pthread_mutex_unlock(&m->lock);
	}
out:
	if (fd >= 0)
		close(fd);
	free(cname);
	return ret;
}

int pfs_local_apply(void *arg, struct pfs_wb_op *op, char *err, size_t errlen)
{
	struct pfs_mirror_local *m = arg;
	char b1[PATH_MAX], b2[PATH_MAX];
	const char *n1, *n2 = NULL;
	char *copy = NULL;
	bool changed = false;
	struct stat st;
	int d1, d2 = -1, ret;

	ret = pfs_local_parent_of(m, op->path, b1, sizeof(b1), &d1, &n1);
	if (ret < 0)
		return fail(err, errlen, ret, "cannot reach the parent of", op->path);
	if (op->kind == PFS_WB_LINK || op->kind == PFS_WB_RENAME) {
		ret = pfs_local_parent_of(m, op->path2, b2, sizeof(b2), &d2, &n2);
		if (ret < 0) {
			pfs_local_put_parent(m, d1);
			return fail(err, errlen, ret, "cannot reach the parent of", op->path2);
		}
	}
	switch (op->kind) {
	case PFS_WB_MKDIR:
	case PFS_WB_CREATE:
	case PFS_WB_SYMLINK:
	case PFS_WB_MKNOD:
		ret = apply_make(m, op, d1, n1);
		break;
	case PFS_WB_LINK:
		ret = pfs_local_view_file(m, op->key, NULL, d1, n1, &copy, &changed);
		if (ret < 0)
			break;
		if (copy) /* the view's file is its conflict copy */
			n1 = copy;
		ret = pfs_st_link(m->st, d1, n1, d2, n2, 0);
		if (ret == -EEXIST) {
			struct stat a, b;

			if (pfs_st_stat(m->st, d1, n1, &a, AT_SYMLINK_NOFOLLOW) == 0 &&
			    pfs_st_stat(m->st, d2, n2, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
			    a.st_ino == b.st_ino && a.st_dev == b.st_dev)
				ret = 0;
		} else if (ret == -ENOENT &&
			   pfs_st_stat(m->st, d2, n2, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			ret = 0; /* linked, and the old name since removed: a replay */
		}
		break;
	case PFS_WB_UNLINK:
		ret = apply_unlink(m, op, d1, n1);
		break;
	case PFS_WB_RMDIR:
		ret = pfs_st_unlink(m->st, d1, n1, AT_REMOVEDIR);
		if (ret == -ENOENT)
			ret = 0;
		else if (ret == -ENOTEMPTY || ret == -EEXIST)
			ret = pfs_local_aside(m, d1, n1, op->path);
		break;
	case PFS_WB_RENAME:
		/* The view's file moves: its conflict copy once it has one
		 * (the other party's file stays at its name), or the file
		 * at name, changes behind the mount and all (moved, not
		 * lost: said as a conflict). */
		ret = op->flags & RENAME_EXCHANGE
			      ? 0
			      : pfs_local_view_file(m, op->key, NULL, d1, n1, &copy, &changed);
		if (ret < 0)
			break;
		if (copy)
			n1 = copy;
		/* (a source gone: moved already, a replay; what is at n2 now
		 * is the file moved there) */
		if (op->key2 && !(op->flags & (RENAME_EXCHANGE | RENAME_NOREPLACE)) &&
		    pfs_st_stat(m->st, d1, n1, &st, AT_SYMLINK_NOFOLLOW) == 0)
			ret = pfs_local_replaced(m, op, d2, n2);
		if (ret == 0)
			ret = pfs_st_rename(m->st, d1, n1, d2, n2, op->flags);
		if ((ret == -ENOTEMPTY || ret == -EEXIST) && !(op->flags & RENAME_NOREPLACE) &&
		    pfs_local_aside(m, d2, n2, op->path2) == 0)
			ret = pfs_st_rename(m->st, d1, n1, d2, n2, op->flags);
		if (ret == -ENOENT && !(op->flags & RENAME_EXCHANGE) &&
		    pfs_st_stat(m->st, d2, n2, &st, AT_SYMLINK_NOFOLLOW) == 0)
			ret = 0; /* a replay: moved already */
		if (ret == 0 && copy)
			pfs_local_settle(m, op->key, d2, n2);
		else if (ret == 0 && changed)
			pfs_local_note(m, "%s changed on the mirror behind the mount; moved to %s as the view "
			     "renamed it, its changes kept there", op->path, op->path2);
		break;
	case PFS_WB_DATA:
		ret = apply_data(m, op, d1, n1);
		break;
	case PFS_WB_ATTR:
	case PFS_WB_SETXATTR:
	case PFS_WB_RMXATTR:
		ret = apply_meta(m, op, d1, n1);
		break;
	default:
		ret = -EINVAL;
	}
	if (ret < 0)
		fail(err, errlen, ret, pfs_wb_kind_name(op->kind), op->path);
	free(copy);
	pfs_local_put_parent(m, d1);
	if (d2 >= 0)
		pfs_local_put_parent(m, d2);
	return ret;
}

/* A new file's run of ops (mirror.h: apply_new) in one apply: the parent
 * found once, the file made once, unnamed (O_TMPFILE), its data, xattrs,
 * owner, mode and times given through its descriptor, then linked in
 * under its name, which must be free. Applied one by one the run made the
 * file twice (CREATE, then DATA's temporary renamed over it) and found the
 * parent four times: 36 system calls per entry of /usr/include against 17
 * for cp -a (see wbq.c: new_file_run). The link is the one moment the
 * mirror changes, so a kill anywhere before it leaves the mirror as it was
 * and nothing to clean up (the unnamed file goes with the daemon).
 *
 * The ATTRs before the DATA change nothing DATA would not set again (the
 * owner, mode and times of the cache's file as it is when applied, as the
 * DATA applied alone sets them); the xattr ops are applied in their order.
 * Where anything is unusual — no O_TMPFILE, the name taken (a replay, or a
 * file made behind the mount: a conflict to see), the key's base with a
 * conflict already — it answers 1, and the queue applies the ops alone. */
int pfs_local_apply_new(void *arg, struct pfs_wb_op *const *ops, unsigned n, char *err,
			size_t errlen)
{
	struct pfs_mirror_local *m = arg;
	struct pfs_wb_op *first = ops[0], *data = ops[n - 1];
	char b1[PATH_MAX], proc[32];
	const char *name;
	struct base_ent *e;
	struct stat sst, st;
	bool conflicted;
	int dfd, fd, ret;

	if (data->kind != PFS_WB_DATA || data->fd < 0 || data->datafd >= 0 ||
	    fstat(data->fd, &sst) < 0 || !S_ISREG(sst.st_mode))
		return 1;
	pthread_mutex_lock(&m->lock);
	e = pfs_basetab_get(&m->bt, first->key);
	conflicted = e && e->h.conflict;
	pthread_mutex_unlock(&m->lock);
	if (conflicted)
		return 1;
	ret = pfs_local_parent_of(m, first->path, b1, sizeof(b1), &dfd, &name);
	if (ret < 0)
		return fail(err, errlen, ret, "cannot reach the parent of", first->path);
	fd = pfs_st_openat(m->st, dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0) {
		pfs_local_put_parent(m, dfd);
		return fd == -EOPNOTSUPP || fd == -EISDIR || fd == -EINVAL
			       ? 1
			       : fail(err, errlen, fd, "create", first->path);
	}
	ret = fill_data(m, fd, data, &sst, FILL_FRESH);
	/* Owner before the xattrs (a chown drops security.capability), mode
	 * and times last (a chown clears the set-id bits; an ACL sets the
	 * mode): the order the DATA applied alone keeps too. */
	if (ret == 0) {
		ret = pfs_st_chown(m->st, pfs_ref_fd(fd), sst.st_uid, sst.st_gid);
		if (ret == -EPERM)
			ret = 0;
	}
	for (unsigned i = 1; ret == 0 && i < n - 1; i++) {
		const struct pfs_wb_op *op = ops[i];

		if (op->kind == PFS_WB_SETXATTR) {
			ret = pfs_st_setxattr(m->st, pfs_ref_fd(fd), op->xname, op->xval, op->xlen,
					      0);
		} else if (op->kind == PFS_WB_RMXATTR) {
			ret = pfs_st_removexattr(m->st, pfs_ref_fd(fd), op->xname);
			if (ret == -ENODATA)
				ret = 0;
		}
	}
	if (ret == 0)
		ret = fill_mode_times(m, fd, &sst);
	if (ret == 0)
		pfs_crashpoint("wb-data-tmp"); /* tests: written, not yet named */
	if (ret == 0)
		made(first, fd);
	if (ret == 0) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		ret = pfs_st_link(m->st, AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW);
		if (ret == -EEXIST)
			ret = 1;
	}
	if (ret == 0 && fstat(fd, &st) == 0)
		pfs_local_set_base(m, first->key, &st);
	close(fd);
	pfs_local_put_parent(m, dfd);
	if (ret < 0)
		fail(err, errlen, ret, "create", first->path);
	return ret;
}
