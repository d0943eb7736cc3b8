/* cache: the operations of the cache store (see cache.h). */
#include "cache/cache_int.h"
#include "store/fcopy.h"
#include "store/meta.h"
#include "store/walk.h"
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

bool pfs_cache_is(const struct pfs_store *st)
{
	return st && st->ops == &pfs_cache_ops;
}

/* Tests kill the daemon between a change of the tree (made or refused)
 * and its release (cache-changed-KIND, cache-refused-KIND). */
static void crashpoint(const char *when, enum pfs_wb_kind k)
{
	char step[64];

	snprintf(step, sizeof(step), "cache-%s-%s", when, pfs_wb_kind_name(k));
	pfs_crashpoint(step);
}

static uint64_t queue(struct pfs_cache *c, struct pfs_wb_op *op)
{
	if (!op) {
		/* (errno from op_at: not in the cache, or no memory) */
		if (errno == ENOMEM)
			fprintf(stderr, "prismfs: cache: out of memory queueing a write-back\n");
		return 0;
	}
	return pfs_wbq_push(c->q, op);
}

/* Record op before the tree makes its change, held in the queue until
 * pfs_cache_released() says whether the tree made it (wbq.h: pfs_wbq_push_held):
 * a kill between the two then never leaves a change in the tree that the
 * journal lacks. ino: the tree's inode at op's path (cache/journal.h: how
 * a replay tells whether the change was made). NULL when op is. */
struct pfs_wb_op *pfs_cache_hold(struct pfs_cache *c, struct pfs_wb_op *op, ino_t ino)
{
	if (!op) {
		if (errno == ENOMEM)
			fprintf(stderr, "prismfs: cache: out of memory queueing a write-back\n");
		return NULL;
	}
	op->tino = ino;
	pfs_wbq_push_held(c->q, op);
	return op;
}

/* The tree's answer ret for the held op (NULL: none). */
void pfs_cache_released(struct pfs_cache *c, struct pfs_wb_op *op, int ret)
{
	if (!op)
		return;
	crashpoint(ret == 0 ? "changed" : "refused", op->kind);
	pfs_wbq_release(c->q, op, ret == 0);
}

struct pfs_wb_op *pfs_cache_op_at(struct pfs_cache *c, enum pfs_wb_kind k, int dirfd,
			       const char *name)
{
	char path[PATH_MAX];
	int ret = pfs_cache_path(c, dirfd, name, path, sizeof(path));

	if (ret < 0) {
		errno = -ret; /* for queue(): a change outside the cache is not lost */
		return NULL;
	}
	return pfs_wb_op_new(k, path);
}

/* Queue the data of the open file fd. */
static uint64_t queue_data(struct pfs_cache *c, int fd)
{
	char proc[32];
	struct pfs_wb_op *op = pfs_cache_op_at(c, PFS_WB_DATA, fd, NULL);
	struct stat st;

	if (!op)
		return 0; /* unlinked meanwhile: nothing to write back */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	op->fd = open(proc, O_RDONLY | O_CLOEXEC);
	if (op->fd < 0 || fstat(op->fd, &st) < 0) {
		pfs_wb_op_free(op);
		return 0;
	}
	op->key = st.st_ino;
	op->bytes = (uint64_t)st.st_size;
	return queue(c, op);
}

static struct wfd **wfd_slot(struct pfs_cache *c, int fd)
{
	struct wfd **p = &c->wtab[pfs_cache_bucket((uint64_t)fd)];

	while (*p && (*p)->fd != fd)
		p = &(*p)->next;
	return p;
}

struct wfd **pfs_cache_wfd_locked(struct pfs_cache *c, int fd)
{
	return wfd_slot(c, fd);
}

/* --------------------------------------------------------------------
 * the operations */

static struct pfs_wb_op *op_made(struct pfs_cache *c, enum pfs_wb_kind k, int dirfd,
				 const char *name, mode_t mode, dev_t rdev, const char *target);
static void made(struct pfs_cache *c, struct pfs_wb_op *op, int dirfd, const char *name,
		 int ret);

static bool written(struct pfs_cache *c, int fd, bool keep);

/* The state of the cache file ino, once a release of its last spilled
 * writer is no longer half done. That release takes the writer out of the
 * table first and marks the file STUB | SPILLED only once its write-back
 * is queued; an open in between would find it SPILLED, no writer to share
 * the spill file with, and take the punched-out memory file for its data
 * (zeros). Polled, for at most a second (pfs_cache_spill_join waits for
 * the same once the file is open, for an open that came before). */
static unsigned settled_state(struct pfs_cache *c, ino_t ino)
{
	unsigned st = pfs_cache_state(c, ino);

	for (int i = 0; i < 1000 && (st & SPILLED) && !(st & STUB) && !pfs_cache_spill_live(c, ino);
	     i++) {
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
		st = pfs_cache_state(c, ino);
	}
	return st;
}

static int c_open(struct pfs_store *st, int dirfd, const char *name, const struct open_how *how)
{
	struct pfs_cache *c = C(st);
	int flags = (int)how->flags, fd, ret;
	bool creating = false, writing = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
	bool spill_now = false;
	struct pfs_wb_op *cop = NULL;
	ino_t ino;
	struct stat s;

	ret = pfs_cache_fill_for(c, dirfd, name);
	if (ret < 0)
		return ret;
again:
	if (flags & O_CREAT)
		creating = pfs_st_stat(c->in, dirfd, name, &s, AT_SYMLINK_NOFOLLOW) == -ENOENT;
	if (writing && !(flags & O_PATH)) {
		pfs_wbq_room(c->q, 0);
		pfs_evict_for_writer(c->ev); /* evict.c */
	}
	/* Its CREATE recorded before the tree makes the file (hold): its
	 * inode, the key, is known after; the queue's next record carries
	 * it (pfs_wbq_release). */
	if (creating)
		cop = op_made(c, PFS_WB_CREATE, dirfd, name, S_IFREG | ((mode_t)how->mode & 07777),
			      0, NULL);
	fd = c->in->ops->open(c->in, dirfd, name, how);
	if (cop) {
		if (fd >= 0 && fstat(fd, &s) == 0) {
			cop->key = s.st_ino;
			cop->fix_key = true;
		}
		made(c, cop, fd, "", fd < 0 ? fd : 0);
	}
	if (fd < 0 || (flags & O_PATH))
		return fd;
	if (fstat(fd, &s) < 0 || s.st_dev != c->dev)
		goto opened;
	if (S_ISDIR(s.st_mode)) { /* to be listed: its names first */
		ret = pfs_cache_fill(c, fd);
		if (ret < 0) {
			close(fd);
			return ret;
		}
		goto opened;
	}
	if (!S_ISREG(s.st_mode))
		goto opened;
	pfs_evict_touch(c->ev, fd, &s); /* evict.c: the most recently used */
	if (settled_state(c, s.st_ino) & STUB) {
		ret = (flags & O_TRUNC) ? -ENOENT : pfs_cache_open_large(c, fd, &s, flags);
		if (ret == -EINPROGRESS) { /* cache_spill.c: a writer of a large file */
			spill_now = true;
		} else if (ret != -ENOENT) { /* the mirror's file, or why not */
			close(fd);
			return ret;
		}
		if (spill_now) {
			/* its data goes to a file beside the mirror, below */
		} else if (flags & O_TRUNC) {
			char path[PATH_MAX];

			/* The mirror holds it at its cache path only once the
			 * changes before are written back (a rename over it
			 * pending would make its base the file it replaced). */
			if (c->q && pfs_wbq_last_move(c->q))
				pfs_wbq_wait(c->q, pfs_wbq_last_move(c->q));
			if (pfs_cache_path(c, fd, NULL, path, sizeof(path)) == 0)
				c->mirror->ops->remember(c->mirror, s.st_ino, path);
			pfs_cache_state_set(c, s.st_ino, 0, STUB);
		} else {
			ret = pfs_cache_load(c, fd, &s);
			if (ret < 0) {
				close(fd);
				return ret;
			}
		}
	} else if (!creating) {
		pthread_mutex_lock(&c->lock);
		c->hits++;
		pthread_mutex_unlock(&c->lock);
	}
	ino = s.st_ino;
	if (writing) {
		struct wfd *w = calloc(1, sizeof(*w)), **p;

		if (fstat(fd, &s) == 0 && w) {
			w->fd = fd;
			w->ino = s.st_ino;
			w->mtime = s.st_mtim;
			w->size = s.st_size;
			w->dirty = creating || (flags & O_TRUNC);
			w->spill = w->cfd = -1;
			pthread_mutex_lock(&c->lock);
			p = wfd_slot(c, fd);
			if (*p) { /* a number reused: the old one was closed unseen */
				struct wfd *old = *p;

				*p = old->next;
				free(old);
				p = wfd_slot(c, fd);
			}
			*p = w;
			pthread_mutex_unlock(&c->lock);
		} else {
			free(w);
		}
		/* passthrough writes are unseen: record the file now (a large
		 * file's once its spill file is named: pfs_cache_spill_open) */
		if (c->j && !spill_now)
			pfs_journal_opened(c->j, fd);
	} else {
		pfs_cache_reader_add(c, fd, ino);
	}
	if (spill_now && (ret = pfs_cache_spill_open(c, fd)) < 0) {
		close(fd);
		return ret;
	}
	/* A file a writer has moved out of memory: opened where it is now. */
	if (!spill_now && (pfs_cache_state(c, ino) & SPILLED) &&
	    (ret = pfs_cache_spill_join(c, fd, ino, flags)) < 0) {
		/* Its last writer's release made it a stub meanwhile: this
		 * open is undone and made again, as one of a stub. */
		pfs_cache_reader_del(c, fd);
		if (writing) {
			written(c, fd, false);
			if (c->j)
				pfs_journal_closed(c->j, fd);
		}
		close(fd);
		if (ret == -EAGAIN)
			goto again;
		return ret;
	}
opened:
	return fd;
}

/* Take fd's entry out of the table if it was opened for writing, and say
 * whether its data changed. */
static bool written(struct pfs_cache *c, int fd, bool keep)
{
	struct wfd **p, *w;
	struct stat s;
	bool changed = false;

	pthread_mutex_lock(&c->lock);
	p = wfd_slot(c, fd);
	w = *p;
	if (w && fstat(fd, &s) == 0 && s.st_ino == w->ino) {
		changed = w->dirty || s.st_size != w->size ||
			  s.st_mtim.tv_sec != w->mtime.tv_sec ||
			  s.st_mtim.tv_nsec != w->mtime.tv_nsec;
		w->mtime = s.st_mtim;
		w->size = s.st_size;
		w->dirty = false;
	}
	if (w && !keep) {
		*p = w->next;
		free(w);
	}
	pthread_mutex_unlock(&c->lock);
	return changed;
}

static void c_release(struct pfs_store *st, int fd)
{
	struct pfs_cache *c = C(st);

	pfs_cache_reader_del(c, fd); /* before its number can be reused */
	if (!pfs_cache_spill_queue(c, fd, true)) {
		if (written(c, fd, false))
			queue_data(c, fd);
		pfs_evict_released(c->ev, fd); /* evict.c */
	}
	if (c->j) /* after its data is queued (and recorded) */
		pfs_journal_closed(c->j, fd);
}

/* close(2) of a descriptor of a writer waits for this, and the caller's
 * next call comes after: its data is queued before that call's change
 * (RELEASE comes later, over FUSE over io_uring even after the next call).
 * A file closed and changed again (mmap) is queued again at RELEASE. */
static int c_flush(struct pfs_store *st, int fd)
{
	struct pfs_cache *c = C(st);

	if (!pfs_cache_spill_flush(c, fd) && written(c, fd, true))
		queue_data(c, fd);
	return 0;
}

static int c_sync(struct pfs_store *st, int fd, bool data_only)
{
	struct pfs_cache *c = C(st);
	int ret = c->in->ops->sync(c->in, fd, data_only);

	if (ret < 0)
		return ret;
	if (!pfs_cache_spill_queue(c, fd, false) && written(c, fd, true))
		queue_data(c, fd);
	/* Everything before it too: the file's name may be new. */
	return pfs_wbq_wait(c->q, pfs_wbq_last(c->q));
}

static int c_truncate(struct pfs_store *st, int fd, off_t len)
{
	struct pfs_cache *c = C(st);
	int ret = c->in->ops->truncate(c->in, fd, len);

	/* (not held: the file is open for writing, recorded at its open,
	 * and a replay writes what the tree has back — journal_replay.c) */
	if (ret == 0)
		crashpoint("changed", PFS_WB_DATA);
	if (ret == 0 && !pfs_cache_spill_truncated(c, fd, len))
		queue_data(c, fd);
	return ret;
}

/* The memory filesystem (tmpfs) has no FALLOC_FL_ZERO_RANGE, which the
 * mirror's filesystem may well have: a hole punched and the range
 * allocated again read as zeros, allocated, as a zeroed range does. */
static int c_fallocate(struct pfs_store *st, int fd, int mode, off_t off, off_t len)
{
	struct pfs_cache *c = C(st);
	int ret = pfs_st_fallocate(c->in, fd, mode, off, len);

	if (ret != -EOPNOTSUPP || (mode & ~FALLOC_FL_KEEP_SIZE) != FALLOC_FL_ZERO_RANGE)
		return ret;
	if (off < 0 || len <= 0)
		return -EINVAL;
	ret = pfs_st_fallocate(c->in, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
	if (ret == 0)
		ret = pfs_st_fallocate(c->in, fd, mode & FALLOC_FL_KEEP_SIZE, off, len);
	return ret;
}

static int c_stat(struct pfs_store *st, int dirfd, const char *name, struct stat *out, int flags)
{
	struct pfs_cache *c = C(st);
	int ret = pfs_cache_fill_for(c, dirfd, name);

	if (ret < 0)
		return ret;
	ret = c->in->ops->stat(c->in, dirfd, name, out, flags);
	/* A directory's link count counts its subdirectories: fill it (and
	 * list it again when its listing is old: the kernel asks for its
	 * attributes before it uses its cached listing). */
	if (ret == 0 && S_ISDIR(out->st_mode) && out->st_dev == c->dev &&
	    (!(pfs_cache_state(c, out->st_ino) & FILLED) ||
	     pfs_cache_dir_stale(c, out->st_ino))) {
		int fd = pfs_st_openat(c->in, dirfd, *name ? name : ".",
				       O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);

		if (fd >= 0) {
			ret = pfs_cache_fill(c, fd);
			close(fd);
			if (ret == 0)
				ret = c->in->ops->stat(c->in, dirfd, name, out, flags);
		}
	}
	return ret;
}

/* Before making name in dirfd (k, mode with its type): its op, held
 * (hold), with the mode and owner the tree will give it — the daemon's
 * ids and umask 0 (cli/daemon.c), a set-group-ID parent's group (and its
 * bit on a directory) — so that the record made first is right; made()
 * records it again in the rare case the tree did otherwise. */
static struct pfs_wb_op *op_made(struct pfs_cache *c, enum pfs_wb_kind k, int dirfd,
				 const char *name, mode_t mode, dev_t rdev, const char *target)
{
	struct pfs_wb_op *op = pfs_cache_op_at(c, k, dirfd, name);
	struct stat ps;

	if (!op)
		return pfs_cache_hold(c, NULL, 0);
	if (target && !(op->target = strdup(target))) {
		pfs_wb_op_free(op);
		errno = ENOMEM;
		return pfs_cache_hold(c, NULL, 0);
	}
	op->mode = S_ISDIR(mode) ? S_IFDIR | (mode & (07777 & ~(mode_t)(S_ISUID | S_ISGID))) :
		   S_ISLNK(mode) ? S_IFLNK | 0777 : mode;
	op->rdev = (S_ISCHR(mode) || S_ISBLK(mode)) ? rdev : 0;
	op->uid = geteuid();
	op->gid = getegid();
	op->mask = PFS_WB_OWNER;
	if (pfs_st_stat(c->in, dirfd, "", &ps, AT_EMPTY_PATH) == 0 && (ps.st_mode & S_ISGID)) {
		op->gid = ps.st_gid;
		if (S_ISDIR(mode))
			op->mode |= S_ISGID;
	}
	return pfs_cache_hold(c, op, 0);
}

/* After the tree made name in dirfd (ret 0) or refused (ret < 0): op with
 * the mode and owner the tree gave it, released. */
static void made(struct pfs_cache *c, struct pfs_wb_op *op, int dirfd, const char *name, int ret)
{
	struct stat s;

	if (op && ret == 0 && pfs_st_stat(c->in, dirfd, name, &s,
					  *name ? AT_SYMLINK_NOFOLLOW : AT_EMPTY_PATH) == 0) {
		dev_t rdev = (S_ISCHR(s.st_mode) || S_ISBLK(s.st_mode)) ? s.st_rdev : 0;

		if (op->mode != s.st_mode || op->uid != s.st_uid || op->gid != s.st_gid ||
		    op->rdev != rdev) {
			op->mode = s.st_mode;
			op->uid = s.st_uid;
			op->gid = s.st_gid;
			op->rdev = rdev;
			op->amend = true;
		}
		if (S_ISDIR(s.st_mode))
			pfs_cache_state_set(c, s.st_ino, FILLED, 0); /* new: nothing to fill */
	}
	pfs_cache_released(c, op, ret);
}

/* The one place the cache refuses a change its mirror could not keep
 * (mirror.h, caps), as a filesystem without it would: err (EPERM for a
 * kind of file it lacks, EOPNOTSUPP for xattrs), after the checks such a
 * filesystem makes first (name, when not NULL, taken: EEXIST). Changes of
 * mode, owner and times are never refused: the mirror keeps what it can,
 * and says what (describe). */
int pfs_cache_refuse(struct pfs_cache *c, unsigned cap, int err, int dirfd, const char *name)
{
	struct stat s;

	if (c->mirror->ops->caps & cap)
		return 0;
	if (name && pfs_st_stat(c->in, dirfd, name, &s, AT_SYMLINK_NOFOLLOW) == 0)
		return -EEXIST;
	return err;
}

static int c_mkdir(struct pfs_store *st, int dirfd, const char *name, mode_t mode)
{
	struct pfs_cache *c = C(st);
	int ret = pfs_cache_fill_for(c, dirfd, name);

	if (ret == 0) {
		struct pfs_wb_op *op = op_made(c, PFS_WB_MKDIR, dirfd, name, S_IFDIR | mode, 0, NULL);

		ret = c->in->ops->mkdir(c->in, dirfd, name, mode);
		made(c, op, dirfd, name, ret);
	}
	return ret;
}

static int c_mknod(struct pfs_store *st, int dirfd, const char *name, mode_t mode, dev_t dev)
{
	struct pfs_cache *c = C(st);
	int ret = pfs_cache_fill_for(c, dirfd, name);

	if (ret == 0 && !S_ISREG(mode))
		ret = pfs_cache_refuse(c, PFS_MIRROR_SPECIAL, -EPERM, dirfd, name);
	if (ret == 0) {
		struct pfs_wb_op *op = op_made(c, S_ISREG(mode) ? PFS_WB_CREATE : PFS_WB_MKNOD,
					       dirfd, name, mode, dev, NULL);

		ret = c->in->ops->mknod(c->in, dirfd, name, mode, dev);
		made(c, op, dirfd, name, ret);
	}
	return ret;
}

static int c_symlink(struct pfs_store *st, const char *target, int dirfd, const char *name)
{
	struct pfs_cache *c = C(st);
	int ret = pfs_cache_fill_for(c, dirfd, name);

	if (ret == 0)
		ret = pfs_cache_refuse(c, PFS_MIRROR_SYMLINK, -EPERM, dirfd, name);
	if (ret == 0) {
		struct pfs_wb_op *op = op_made(c, PFS_WB_SYMLINK, dirfd, name, S_IFLNK, 0, target);

		ret = c->in->ops->symlink(c->in, target, dirfd, name);
		made(c, op, dirfd, name, ret);
	}
	return ret;
}

/* An op naming two places: both paths taken before the change. */
static struct pfs_wb_op *op_two(struct pfs_cache *c, enum pfs_wb_kind k, int d1, const char *n1,
				int d2, const char *n2)
{
	struct pfs_wb_op *op = pfs_cache_op_at(c, k, d1, n1);
	char p2[PATH_MAX];
	int ret = op ? pfs_cache_path(c, d2, n2, p2, sizeof(p2)) : 0;

	if (op && (ret < 0 || !(op->path2 = strdup(p2)))) {
		pfs_wb_op_free(op);
		errno = ret < 0 ? -ret : ENOMEM;
		return NULL;
	}
	return op;
}

/* The key (mirror.h) of the regular file at name, for an op by path that
 * the mirror applies to the view's file (its conflict copy, if it has
 * one); 0 for anything else, and for one of several names of a file
 * (shared) unless shared_ok: that name is not the file. */
static uint64_t file_key(struct pfs_cache *c, int dirfd, const char *name, int at,
			 bool shared_ok)
{
	struct stat s;

	if (pfs_st_stat(c->in, dirfd, name, &s, AT_SYMLINK_NOFOLLOW | at) < 0 || !S_ISREG(s.st_mode) ||
	    (s.st_nlink > 1 && !shared_ok))
		return 0;
	return s.st_ino;
}

/* The mirror's file at name as the cache listed it, for an op that
 * removes or replaces it there while the cache never loaded it (a stub,
 * unchanged here since it was listed: its ctime): the mirror has no base
 * of it, and must not remove another file (mirror.h). b left as it is
 * otherwise. */
static void listed_base(struct pfs_cache *c, int dirfd, const char *name, struct pfs_wb_base *b)
{
	struct stat s;
	struct ent *e;

	if (pfs_st_stat(c->in, dirfd, name, &s, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(s.st_mode))
		return;
	pthread_mutex_lock(&c->lock);
	e = pfs_cache_ent(c, s.st_ino, false);
	if (e && (e->state & STUB) && (e->state & LISTED) && e->lctim.tv_sec == s.st_ctim.tv_sec &&
	    e->lctim.tv_nsec == s.st_ctim.tv_nsec) {
		b->valid = true;
		b->size = e->lsize;
		b->mtime = e->lmtim;
	}
	pthread_mutex_unlock(&c->lock);
}

/* The tree's inode at name (0: none). */
static ino_t tree_ino(struct pfs_cache *c, int dirfd, const char *name)
{
	struct stat s;

	return pfs_st_stat(c->in, dirfd, name, &s, AT_SYMLINK_NOFOLLOW) == 0 ? s.st_ino : 0;
}

static int c_link(struct pfs_store *st, int odirfd, const char *oname, int ndirfd,
		  const char *nname, int flags)
{
	struct pfs_cache *c = C(st);
	struct pfs_wb_op *op;
	struct stat s = {0};
	int ret = pfs_cache_fill_for(c, odirfd, oname);

	if (ret == 0)
		ret = pfs_cache_fill_for(c, ndirfd, nname);
	/* (a missing old name is ENOENT first, as the kernel's lookup says) */
	if (ret == 0 && pfs_st_stat(c->in, odirfd, oname, &s,
				    AT_SYMLINK_NOFOLLOW | (flags & AT_EMPTY_PATH)) == 0)
		ret = pfs_cache_refuse(c, PFS_MIRROR_HARDLINK, -EPERM, ndirfd, nname);
	if (ret < 0)
		return ret;
	op = op_two(c, PFS_WB_LINK, odirfd, oname, ndirfd, nname);
	if (op)
		op->key = file_key(c, odirfd, oname, flags & AT_EMPTY_PATH, true);
	op = pfs_cache_hold(c, op, s.st_ino);
	ret = c->in->ops->link(c->in, odirfd, oname, ndirfd, nname, flags);
	pfs_cache_released(c, op, ret);
	return ret;
}

static int c_unlink(struct pfs_store *st, int dirfd, const char *name, int flags)
{
	struct pfs_cache *c = C(st);
	struct pfs_wb_op *op;
	int ret = pfs_cache_fill_for(c, dirfd, name);

	if (ret < 0)
		return ret;
	op = pfs_cache_op_at(c, flags & AT_REMOVEDIR ? PFS_WB_RMDIR : PFS_WB_UNLINK, dirfd, name);
	if (op && (op->key = file_key(c, dirfd, name, 0, false)))
		listed_base(c, dirfd, name, &op->base);
	op = pfs_cache_hold(c, op, tree_ino(c, dirfd, name));
	ret = c->in->ops->unlink(c->in, dirfd, name, flags);
	pfs_cache_released(c, op, ret);
	return ret;
}

static int c_rename(struct pfs_store *st, int odirfd, const char *oname, int ndirfd,
		    const char *nname, unsigned flags)
{
	struct pfs_cache *c = C(st);
	struct pfs_wb_op *op;
	int ret = pfs_cache_fill_for(c, odirfd, oname);

	if (ret == 0)
		ret = pfs_cache_fill_for(c, ndirfd, nname);
	if (ret < 0)
		return ret;
	op = op_two(c, PFS_WB_RENAME, odirfd, oname, ndirfd, nname);
	if (op) {
		op->flags = flags;
		op->key = file_key(c, odirfd, oname, 0, false);
		if (!(flags & (RENAME_EXCHANGE | RENAME_NOREPLACE)) &&
		    (op->key2 = file_key(c, ndirfd, nname, 0, false)))
			listed_base(c, ndirfd, nname, &op->base);
	}
	op = pfs_cache_hold(c, op, tree_ino(c, odirfd, oname));
	ret = c->in->ops->rename(c->in, odirfd, oname, ndirfd, nname, flags);
	pfs_cache_released(c, op, ret);
	return ret;
}

static ssize_t c_readlink(struct pfs_store *st, int dirfd, const char *name, char *buf,
			  size_t len)
{
	struct pfs_cache *c = C(st);
	int ret = pfs_cache_fill_for(c, dirfd, name);

	return ret < 0 ? ret : c->in->ops->readlink(c->in, dirfd, name, buf, len);
}

static int c_copy(struct pfs_store *st, int dst, int src, off_t size, bool clone,
		  pfs_st_tick *tick, void *arg)
{
	return C(st)->in->ops->copy(C(st)->in, dst, src, size, clone, tick, arg);
}

void pfs_cache_destroy(struct pfs_store *st)
{
	struct pfs_cache *c = C(st);

	pfs_evict_free(c->ev); /* evict.c: its thread first */
	if (c->q)
		pfs_wbq_stop(c->q, false, 0, NULL);
	pfs_journal_close(c->j); /* after the queue: it unmounts the tree if done */
	pfs_mirror_close(c->mirror);
	pfs_cache_links_free(c);
	for (unsigned i = 0; i < NBUCKETS; i++) {
		while (c->tab[i]) {
			struct ent *e = c->tab[i];

			c->tab[i] = e->next;
			free(e);
		}
		while (c->wtab[i]) {
			struct wfd *w = c->wtab[i];

			c->wtab[i] = w->next;
			if (w->spill >= 0)
				close(w->spill);
			if (w->cfd >= 0)
				close(w->cfd);
			free(w);
		}
		while (c->rtab[i]) {
			struct rfd *r = c->rtab[i];

			c->rtab[i] = r->next;
			free(r);
		}
	}
	close(c->root);
	/* The store it wraps is its own once made (cli/cache_mount.c). */
	if (c->in)
		pfs_store_free(c->in);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->spill_cv);
	pthread_mutex_destroy(&c->load_lock);
	free(c);
}

/* The history above records paths as the mirror knows them. A file whose
 * only name went (a write noted at its release) keeps the name it had. */
static int c_path(struct pfs_store *st, int dirfd, const char *name, char *buf, size_t len)
{
	struct pfs_cache *c = C(st);
	char proc[32], p[PATH_MAX];
	const char *rel = p;
	ssize_t n;
	int ret = pfs_cache_path(c, dirfd, name, buf, len), w;

	if (ret != -ENOENT || (name && *name))
		return ret;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", dirfd);
	n = readlink(proc, p, sizeof(p) - 1);
	if (n < 0)
		return -errno;
	p[n] = '\0';
	if (n > 10 && strcmp(p + n - 10, " (deleted)") == 0)
		p[n - 10] = '\0';
	if (strncmp(p, c->rootpath, c->rootlen) == 0)
		rel = p + c->rootlen;
	while (*rel == '/')
		rel++;
	w = snprintf(buf, len, "%s", rel);
	return w < 0 || (size_t)w >= len ? -ENAMETOOLONG : 0;
}

const struct pfs_store_ops pfs_cache_ops = {
	.path = c_path,
	.open = c_open,
	.stat = c_stat,
	.mkdir = c_mkdir,
	.mknod = c_mknod,
	.symlink = c_symlink,
	.link = c_link,
	.unlink = c_unlink,
	.rename = c_rename,
	.readlink = c_readlink,
	.chmod = pfs_cache_chmod,
	.chown = pfs_cache_chown,
	.utimes = pfs_cache_utimes,
	.truncate = c_truncate,
	.getxattr = pfs_cache_getxattr,
	.setxattr = pfs_cache_setxattr,
	.listxattr = pfs_cache_listxattr,
	.removexattr = pfs_cache_removexattr,
	.sync = c_sync,
	.copy = c_copy,
	.release = c_release,
	.flush = c_flush,
	.direct_ok = pfs_cache_direct_ok,
	.write_prep = pfs_cache_write_prep,
	.fallocate = c_fallocate,
	.destroy = pfs_cache_destroy,
};

/* --lazy-load off: fill every directory now, breadth first. */
