/* cache_spill: files too large for memory.
 *
 * A writer of a cache file is served by the daemon (pfs_cache_direct_ok
 * says no to kernel passthrough), so each of its writes is seen first
 * (pfs_cache_write_prep): it waits while more than the dirty limit is
 * waiting for its write-back, and once the file would pass half the cache
 * or the dirty limit — or a write found the cache full — the file leaves
 * memory: its data is copied to an unnamed file on the mirror's filesystem
 * (the mirror's tmpfile: O_TMPFILE at its root; only a mirror on a local
 * filesystem has tmpfile and open; with --journal it is made in the
 * journal's DIR/spill instead, named so that it outlives a kill: see
 * cache/journal_spill.c; with neither, files stay in memory and one
 * larger than the cache gets ENOSPC), that file takes the writer's
 * descriptor number (dup3: the view keeps writing to "its" descriptor),
 * and so does every other descriptor of the file the daemon holds then
 * (follow_locked: the writers' table, and the readers', c->rtab),
 * and the cache file stays a stub of the right size with its memory
 * punched out. The kernel sends one write of an inode at a time (its inode
 * lock), so no write goes to the old place meanwhile.
 *
 * A write-back of the file queued before the move is made to read the
 * spill file (what the cache file held is punched out; it would read a
 * stub). At close (FLUSH, when the data changed since), fsync and release
 * the write-back is queued from the spill file (the
 * stub still gives the size, mode and times; at the release of its last
 * writer the mirror links the spill file itself into place, PFS_WB_DATA_MOVE,
 * else copies it); at that release the stub becomes STUB | SPILLED. An open of a SPILLED stub first waits for the write-back,
 * and a reader of a stub larger than what may be in memory gets the
 * mirror's file (its open) instead of a load (its attributes stay the stub's: the
 * view shows the node's, not a foreign handle's). */
#include "cache/cache_int.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool writes(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

bool pfs_cache_direct_ok(struct pfs_store *st, int fd, int flags)
{
	struct pfs_cache *c = C(st);
	struct stat s;

	if (!c->spill_at || fstat(fd, &s) < 0 || !S_ISREG(s.st_mode))
		return true;
	/* The mirror's file of a large stub: a writer opening it meanwhile
	 * must not write to the mirror by the kernel's hand. */
	if (s.st_dev != c->dev)
		return false;
	return !writes(flags);
}

/* A spilled writer's stub grows with it. 1: fd is spilled; 0: not; -errno. */
static int grow_spilled(struct pfs_cache *c, int fd, off_t end)
{
	struct wfd *w;
	int ret = 0;

	pthread_mutex_lock(&c->lock);
	w = *pfs_cache_wfd_locked(c, fd);
	if (w && w->spill >= 0) {
		struct stat s;

		/* The stub is shared by every writer of the spill file, and
		 * another may have grown or cut it (a truncate, an O_TRUNC
		 * open) since this one last looked: its size, not ours, says
		 * whether this write grows it. */
		ret = 1;
		if (fstat(w->cfd, &s) < 0)
			ret = -errno;
		else if (end > s.st_size && ftruncate(w->cfd, end) < 0)
			ret = -errno;
		else
			w->stub_size = end > s.st_size ? end : s.st_size;
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/* A new file without a name, read-write: in the journal's DIR/spill with
 * --journal (named there before the cache file's memory goes: it must
 * outlive a kill, cache/journal_spill.c), else on the mirror's filesystem
 * (only a mirror with tmpfile spills then: c->spill_at is 0 otherwise). */
static int spill_file(struct pfs_cache *c)
{
	if (c->j)
		return pfs_journal_spill_new(c->j);
	return c->mirror->ops->tmpfile ? c->mirror->ops->tmpfile(c->mirror) : -EOPNOTSUPP;
}

struct retarget {
	int mfd;
	bool failed;
};

/* A write-back queued before the move reads the data where it is now. The
 * cache file keeps giving size, mode and times, opened O_PATH: an open
 * for reading would keep the write lease below from being granted. */
static void retarget(struct pfs_wb_op *op, void *arg)
{
	struct retarget *r = arg;
	char proc[32];
	int datafd, pfd;

	if (op->datafd >= 0 || op->fd < 0)
		return; /* from a spill file already (another writer's) */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", op->fd);
	datafd = fcntl(r->mfd, F_DUPFD_CLOEXEC, 0);
	pfd = open(proc, O_PATH | O_CLOEXEC);
	if (datafd < 0 || pfd < 0) {
		if (datafd >= 0)
			close(datafd);
		if (pfd >= 0)
			close(pfd);
		r->failed = true; /* it reads the cache file: leave its data there */
		return;
	}
	close(op->fd);
	op->fd = pfd;
	op->datafd = datafd;
}

/* Every write-back of ino queued before its data moved to mfd: made to
 * read mfd (one being applied is waited for). True: none reads the
 * cache file's data any more. */
static bool retarget_queued(struct pfs_cache *c, ino_t ino, int mfd)
{
	struct retarget r = {.mfd = mfd};
	uint64_t busy;

	if (!c->q)
		return true;
	while ((busy = pfs_wbq_data_each(c->q, ino, retarget, &r)) != 0) {
		/* (returns once it is applied, or has failed and waits again) */
		pfs_wbq_wait(c->q, busy);
	}
	return !r.failed;
}

void pfs_cache_reader_add(struct pfs_cache *c, int fd, ino_t ino)
{
	struct rfd *r = malloc(sizeof(*r)), **p;

	if (!r)
		return; /* (it reads the memory file: stale once it is moved) */
	r->fd = fd;
	r->ino = ino;
	pthread_mutex_lock(&c->lock);
	p = &c->rtab[pfs_cache_bucket((uint64_t)fd)];
	r->next = *p;
	*p = r;
	pthread_mutex_unlock(&c->lock);
}

void pfs_cache_reader_del(struct pfs_cache *c, int fd)
{
	struct rfd **p, *r;

	pthread_mutex_lock(&c->lock);
	for (p = &c->rtab[pfs_cache_bucket((uint64_t)fd)]; (r = *p); p = &r->next) {
		if (r->fd == fd) {
			*p = r->next;
			free(r);
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
}

/* fd, still the cache file ino (a number not reused: the tables drop an
 * fd at its release, before its close), opens mfd from now on, with its
 * own access mode and flags. 0: moved; 1: not the cache file's; -errno. */
static int point_at(struct pfs_cache *c, int fd, ino_t ino, int mfd)
{
	char proc[32];
	struct stat s;
	int fl, nfd;

	if (fstat(fd, &s) < 0 || s.st_dev != c->dev || s.st_ino != ino)
		return 1; /* on a spill file already (spill_join) */
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", mfd);
	nfd = open(proc, (fl & (O_ACCMODE | O_APPEND | O_NONBLOCK)) | O_CLOEXEC);
	if (nfd < 0)
		return -errno;
	if (dup3(nfd, fd, O_CLOEXEC) < 0) {
		int e = -errno;

		close(nfd);
		return e;
	}
	close(nfd);
	return 0;
}

/* The file ino (its cache file cfd, size bytes) was moved to mfd by the
 * writer fd: every other descriptor the daemon holds of it follows. Two
 * descriptors of one file see the same data (POSIX read(2) after write(2)):
 * one left on the memory file would read its old data — zeros once its
 * memory is punched, or past its old end — and its writes would be lost
 * there. They are plain descriptors the daemon serves by number, so the
 * spill file takes the number (as the writer's, dup3); a writer among them
 * becomes a writer of the spill file as spill_join makes one (its data is
 * queued from there at its close). The kernel's inode lock keeps writes
 * out meanwhile; a read running now reads either file, both hold the data.
 *
 * Not a kernel passthrough open: its backing file was fixed at open and
 * cannot change. None is open here, though: the view serves all opens of
 * a node one way (pfs_node_backing_get_or_daemon) — a writer opening a
 * file that passthrough readers have open gets passthrough too, and is
 * never moved (its writes are unseen), while one served by the daemon,
 * the only kind that moves, makes every open after it the daemon's. What
 * is left is a passthrough mapping that outlived its close: it keeps the
 * memory file, whose memory is then not punched (the write lease below is
 * refused), so it reads the data as it was at the move. Under c->lock. */
static void follow_locked(struct pfs_cache *c, int fd, ino_t ino, int mfd, int cfd, off_t size)
{
	int ret;

	for (unsigned i = 0; i < NBUCKETS; i++) {
		for (struct wfd *w = c->wtab[i]; w; w = w->next) {
			if (w->ino != ino || w->fd == fd || w->spill >= 0)
				continue;
			w->spill = fcntl(mfd, F_DUPFD_CLOEXEC, 0);
			w->cfd = fcntl(cfd, F_DUPFD_CLOEXEC, 0);
			ret = w->spill < 0 || w->cfd < 0 ? -errno
							 : point_at(c, w->fd, ino, mfd);
			if (ret != 0) {
				if (w->spill >= 0)
					close(w->spill);
				if (w->cfd >= 0)
					close(w->cfd);
				w->spill = w->cfd = -1;
				if (ret < 0)
					fprintf(stderr, "prismfs: cache: a descriptor of a file "
						"moved out of memory stays in memory: %s\n",
						strerror(-ret));
				continue;
			}
			w->stub_size = size;
			w->dirty = true; /* queued from the spill file at its close */
			__atomic_add_fetch(&c->spilled, 1, __ATOMIC_RELEASE);
		}
		for (struct rfd *r = c->rtab[i]; r; r = r->next) {
			if (r->ino != ino)
				continue;
			ret = point_at(c, r->fd, ino, mfd);
			if (ret < 0)
				fprintf(stderr, "prismfs: cache: a reader of a file moved out "
					"of memory stays in memory: %s\n", strerror(-ret));
		}
	}
}

static int spill(struct pfs_cache *c, int fd, off_t end, int failed)
{
	int cfd = -1, mfd = -1, nfd = -1, fl, ret;
	char proc[32];
	struct stat s;
	struct wfd *w;
	bool moved;

	pthread_mutex_lock(&c->lock);
	w = *pfs_cache_wfd_locked(c, fd);
	/* Once it could not be moved, only a full cache tries again. */
	ret = w && w->spill < 0 && (failed || !w->nospill);
	pthread_mutex_unlock(&c->lock);
	if (!ret)
		return failed; /* not a writer of the cache's: nothing to move */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	cfd = open(proc, O_RDWR | O_CLOEXEC);
	if (cfd < 0 || fstat(cfd, &s) < 0 || s.st_dev != c->dev) {
		ret = cfd < 0 ? -errno : -EXDEV;
		goto fail;
	}
	mfd = spill_file(c);
	if (mfd < 0) {
		ret = mfd;
		goto fail;
	}
	ret = pfs_st_copy(c->in, mfd, cfd, s.st_size, false, NULL, NULL);
	/* With a journal: named as the file's data before it leaves the tree. */
	if (ret == 0 && c->j) {
		pfs_crashpoint("spill-copied"); /* tests: the data still the tree's */
		ret = pfs_journal_spill_keep(c->j, cfd, mfd);
		if (ret == 0)
			pfs_crashpoint("spill-named"); /* tests: in both places */
	}
	if (ret < 0)
		goto fail;
	fl = fcntl(fd, F_GETFL);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", mfd);
	nfd = fl < 0 ? -1 : open(proc, (fl & (O_ACCMODE | O_APPEND | O_NONBLOCK)) | O_CLOEXEC);
	if (nfd < 0 || dup3(nfd, fd, O_CLOEXEC) < 0) {
		ret = -errno;
		goto fail;
	}
	close(nfd);
	nfd = -1;
	pthread_mutex_lock(&c->lock);
	follow_locked(c, fd, s.st_ino, mfd, cfd, end > s.st_size ? end : s.st_size);
	pthread_mutex_unlock(&c->lock);
	/* The data is the spill file's from now on: give the memory back —
	 * unless another open still reads it there (the write lease proves
	 * none does, as eviction's does; an open meanwhile waits for it), a
	 * write-back queued before included: it reads the spill file now. */
	moved = retarget_queued(c, s.st_ino, mfd);
	if (s.st_size > 0 && moved && fcntl(cfd, F_SETSIG, SIGURG) == 0 &&
	    fcntl(cfd, F_SETLEASE, F_WRLCK) == 0) {
		fallocate(cfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, s.st_size);
		fcntl(cfd, F_SETLEASE, F_UNLCK);
	}
	if (end > s.st_size && ftruncate(cfd, end) == 0)
		s.st_size = end;
	pthread_mutex_lock(&c->lock);
	w = *pfs_cache_wfd_locked(c, fd);
	if (w) {
		w->spill = mfd;
		w->cfd = cfd;
		w->stub_size = s.st_size;
		/* Its data is queued again at the next close (FLUSH), from
		 * the spill file, which is what is compared from now on. */
		w->dirty = true;
		mfd = cfd = -1;
		__atomic_add_fetch(&c->spilled, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&c->lock);
	pfs_cache_state_set(c, s.st_ino, SPILLED, 0);
	if (c->j)
		pfs_crashpoint("spill-moved"); /* tests: out of memory, not yet written */
	ret = 0;
fail:
	if (nfd >= 0)
		close(nfd);
	if (mfd >= 0)
		close(mfd);
	if (cfd >= 0)
		close(cfd);
	if (ret < 0 && !failed) {
		pthread_mutex_lock(&c->lock);
		w = *pfs_cache_wfd_locked(c, fd);
		if (w)
			w->nospill = true;
		pthread_mutex_unlock(&c->lock);
		fprintf(stderr, "prismfs: cache: cannot move a large file out of memory: %s\n",
			strerror(-ret));
		return 0; /* write it to memory while there is room */
	}
	return ret < 0 ? failed : 0;
}

int pfs_cache_write_prep(struct pfs_store *st, int fd, off_t off, size_t len, int failed)
{
	struct pfs_cache *c = C(st);
	off_t end = off + (off_t)len;
	struct stat s;
	int ret;

	if (__atomic_load_n(&c->spilled, __ATOMIC_ACQUIRE)) {
		ret = grow_spilled(c, fd, end);
		if (ret != 0)
			return ret < 0 ? ret : failed;
	}
	if (failed && failed != -ENOSPC)
		return failed;
	if (!failed) {
		if (!c->spill_at)
			return 0;
		if (fstat(fd, &s) < 0 || s.st_dev != c->dev || !S_ISREG(s.st_mode))
			return 0;
		/* The data it holds, not its size: a sparse file of any size
		 * whose few blocks fit stays in memory, as on any filesystem. */
		if ((off_t)s.st_blocks * 512 + (off_t)len <= (off_t)c->spill_at) {
			/* --cache-max-dirty: wait for the write-back of others. */
			if (c->q && c->qo.max_dirty)
				pfs_wbq_room(c->q, len);
			return 0;
		}
	}
	return spill(c, fd, end, failed);
}

/* Another writer of ino has it spilled now. */
static bool live_locked(struct pfs_cache *c, ino_t ino)
{
	for (unsigned i = 0; i < NBUCKETS; i++)
		for (struct wfd *w = c->wtab[i]; w; w = w->next)
			if (w->ino == ino && w->spill >= 0)
				return true;
	return false;
}

bool pfs_cache_spill_live(struct pfs_cache *c, ino_t ino)
{
	bool live;

	pthread_mutex_lock(&c->lock);
	live = live_locked(c, ino);
	pthread_mutex_unlock(&c->lock);
	return live;
}

static bool spill_queue(struct pfs_cache *c, int fd, bool release, bool if_changed)
{
	struct wfd **p, *w;
	struct pfs_wb_op *op = NULL;
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {0}};
	char path[PATH_MAX], proc[32];
	struct stat ss;
	bool last = false;

	if (!__atomic_load_n(&c->spilled, __ATOMIC_ACQUIRE))
		return false;
	pthread_mutex_lock(&c->lock);
	p = pfs_cache_wfd_locked(c, fd);
	w = *p;
	if (!w || w->spill < 0) {
		pthread_mutex_unlock(&c->lock);
		return false;
	}
	if (if_changed) {
		bool changed = w->dirty;

		if (fstat(w->spill, &ss) == 0) {
			changed = changed || ss.st_size != w->size ||
				  ss.st_mtim.tv_sec != w->mtime.tv_sec ||
				  ss.st_mtim.tv_nsec != w->mtime.tv_nsec;
			w->size = ss.st_size;
			w->mtime = ss.st_mtim;
		}
		w->dirty = false;
		if (!changed) {
			pthread_mutex_unlock(&c->lock);
			return true;
		}
	}
	if (release) {
		*p = w->next;
		__atomic_sub_fetch(&c->spilled, 1, __ATOMIC_RELEASE);
		last = !live_locked(c, w->ino);
	}
	/* The stub says what the file is: its size and time of change. */
	if (fstat(w->spill, &ss) == 0) {
		if (ftruncate(w->cfd, ss.st_size) == 0)
			w->stub_size = ss.st_size;
		ts[1] = ss.st_mtim;
		futimens(w->cfd, ts);
	}
	pthread_mutex_unlock(&c->lock);
	if (pfs_cache_path(c, w->cfd, NULL, path, sizeof(path)) == 0)
		op = pfs_wb_op_new(PFS_WB_DATA, path);
	if (op && release) {
		op->fd = w->cfd;
		op->datafd = w->spill;
		w->cfd = w->spill = -1;
		/* No one writes it any more: the mirror may take it — not a
		 * journal's, which a replay may read again (journal_spill.c);
		 * that one goes once this is applied. */
		if (last)
			op->flags = c->j ? PFS_WB_DATA_SPILLED : PFS_WB_DATA_MOVE;
	} else if (op) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", w->cfd);
		op->fd = open(proc, O_RDONLY | O_CLOEXEC);
		op->datafd = fcntl(w->spill, F_DUPFD_CLOEXEC, 0);
		if (op->fd < 0 || op->datafd < 0) {
			pfs_wb_op_free(op);
			op = NULL;
		}
	}
	if (op) {
		op->key = w->ino;
		op->bytes = (uint64_t)w->stub_size;
		pfs_wbq_push(c->q, op);
	}
	if (release) {
		/* The last writer gone: a stub, loaded once written back. */
		if (last) {
			pfs_cache_state_set(c, w->ino, STUB | SPILLED, 0);
			pthread_mutex_lock(&c->lock);
			pthread_cond_broadcast(&c->spill_cv); /* spill_join */
			pthread_mutex_unlock(&c->lock);
		}
		/* Nothing to write back (no name has it now): a journal's
		 * spill file would wait for the next mount to go. */
		if (last && !op && c->j)
			pfs_journal_spill_drop(c->j, w->cfd, w->spill);
		if (w->cfd >= 0)
			close(w->cfd);
		if (w->spill >= 0)
			close(w->spill);
		free(w);
	}
	return true;
}

bool pfs_cache_spill_queue(struct pfs_cache *c, int fd, bool release)
{
	return spill_queue(c, fd, release, false);
}

bool pfs_cache_spill_flush(struct pfs_cache *c, int fd)
{
	return spill_queue(c, fd, false, true);
}

int pfs_cache_open_large(struct pfs_cache *c, int fd, const struct stat *st, int flags)
{
	char path[PATH_MAX];
	int ret;

	if (pfs_cache_state(c, st->st_ino) & SPILLED) {
		/* Its data is on its way to the mirror: loaded from there after. */
		ret = pfs_wbq_wait(c->q, pfs_wbq_last(c->q));
		if (ret < 0)
			return ret;
		pfs_cache_state_set(c, st->st_ino, 0, SPILLED);
	}
	/* (a mirror that cannot be read locally: loaded, as any file) */
	if (!c->spill_at || st->st_size <= (off_t)c->spill_at || !c->mirror->ops->open)
		return -ENOENT;
	/* The mirror is opened by the file's name in the cache: it is the
	 * file's there only once the renames queued before are applied (a
	 * rename pending would give the file the name had before). */
	if (c->q && pfs_wbq_last_move(c->q)) {
		ret = pfs_wbq_wait(c->q, pfs_wbq_last_move(c->q));
		if (ret < 0)
			return ret;
	}
	if (writes(flags))
		return -EINPROGRESS;
	ret = pfs_cache_path(c, fd, NULL, path, sizeof(path));
	if (ret < 0)
		return ret;
	return c->mirror->ops->open(c->mirror, path, O_RDONLY | (flags & O_NONBLOCK));
}

int pfs_cache_spill_open(struct pfs_cache *c, int fd)
{
	int src = -1, mfd = -1, cfd = -1, nfd = -1, fl, ret;
	char path[PATH_MAX], proc[32];
	struct wfd **p, *w;
	struct stat mst, s;

	pthread_mutex_lock(&c->lock);
	ret = *pfs_cache_wfd_locked(c, fd) ? 0 : -ENOMEM; /* not in the table */
	pthread_mutex_unlock(&c->lock);
	if (ret == 0)
		ret = pfs_cache_path(c, fd, NULL, path, sizeof(path));
	if (ret < 0)
		goto fail;
	src = c->mirror->ops->open(c->mirror, path, O_RDONLY); /* spilling: it has open */
	if (src < 0 || fstat(src, &mst) < 0) {
		ret = src < 0 ? src : -errno;
		goto fail;
	}
	mfd = spill_file(c);
	if (mfd < 0) {
		ret = mfd;
		goto fail;
	}
	/* The same filesystem: shared blocks where it can. */
	ret = pfs_st_copy(c->in, mfd, src, mst.st_size, true, NULL, NULL);
	if (ret == -EOPNOTSUPP || ret == -EXDEV || ret == -EINVAL)
		ret = pfs_st_copy(c->in, mfd, src, mst.st_size, false, NULL, NULL);
	if (ret < 0)
		goto fail;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	cfd = open(proc, O_RDWR | O_CLOEXEC);
	fl = fcntl(fd, F_GETFL);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", mfd);
	nfd = cfd < 0 || fl < 0 ? -1 : open(proc, (fl & (O_ACCMODE | O_APPEND | O_NONBLOCK)) | O_CLOEXEC);
	if (nfd < 0 || fstat(cfd, &s) < 0 || ftruncate(cfd, mst.st_size) < 0) {
		ret = -errno;
		goto fail;
	}
	/* With a journal the file is recorded open for writing only once its
	 * spill file is named: a replay of the record reads the data from
	 * there, never from the stub (holes); fd is still the tree's file. */
	if (c->j) {
		ret = pfs_journal_spill_keep(c->j, cfd, mfd);
		if (ret < 0)
			goto fail;
		pfs_journal_opened(c->j, fd);
	}
	if (dup3(nfd, fd, O_CLOEXEC) < 0) {
		ret = -errno;
		goto fail;
	}
	ret = c->mirror->ops->remember(c->mirror, s.st_ino, path);
	if (ret < 0)
		goto fail;
	pthread_mutex_lock(&c->lock);
	w = *pfs_cache_wfd_locked(c, fd);
	if (w) {
		w->spill = mfd;
		w->cfd = cfd;
		w->stub_size = mst.st_size;
		mfd = cfd = -1;
		__atomic_add_fetch(&c->spilled, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&c->lock);
	pfs_cache_state_set(c, s.st_ino, SPILLED, STUB);
	ret = 0;
fail:
	if (ret < 0) {
		pthread_mutex_lock(&c->lock);
		p = pfs_cache_wfd_locked(c, fd);
		if ((w = *p)) {
			*p = w->next;
			free(w);
		}
		pthread_mutex_unlock(&c->lock);
	}
	if (nfd >= 0)
		close(nfd);
	if (src >= 0)
		close(src);
	if (mfd >= 0)
		close(mfd);
	if (cfd >= 0)
		close(cfd);
	return ret;
}

bool pfs_cache_spill_truncated(struct pfs_cache *c, int fd, off_t len)
{
	struct wfd *w;
	bool spilled = false;

	if (!__atomic_load_n(&c->spilled, __ATOMIC_ACQUIRE))
		return false;
	pthread_mutex_lock(&c->lock);
	w = *pfs_cache_wfd_locked(c, fd);
	if (w && w->spill >= 0) {
		spilled = true;
		if (ftruncate(w->cfd, len) == 0)
			w->stub_size = len;
	}
	pthread_mutex_unlock(&c->lock);
	return spilled;
}

int pfs_cache_spill_join(struct pfs_cache *c, int fd, ino_t ino, int flags)
{
	int spill = -1, cfd = -1, nfd = -1, fl, ret = 0;
	off_t size = 0;
	char proc[32];
	struct wfd *w, *mine;

	if (!__atomic_load_n(&c->spilled, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < NBUCKETS && spill < 0 && ret == 0; i++) {
		for (w = c->wtab[i]; w; w = w->next) {
			if (w->ino == ino && w->spill >= 0 && w->fd != fd) {
				spill = fcntl(w->spill, F_DUPFD_CLOEXEC, 0);
				cfd = fcntl(w->cfd, F_DUPFD_CLOEXEC, 0);
				size = w->stub_size;
				ret = spill < 0 || cfd < 0 ? -errno : 0;
				break;
			}
		}
	}
	/* SPILLED and no writer live, but not yet a stub: the last one's
	 * release (spill_queue) has left the table and not yet queued the
	 * write-back and marked the file. Its memory is punched: opened as it
	 * is, the file would read zeros. Opened again once it is a stub, it is
	 * read from where the write-back puts it (pfs_cache_open_large). (The
	 * wait is bounded: a writer forgotten unreleased, a number reused,
	 * never marks it.) */
	if (spill < 0 && ret == 0) {
		struct ent *e = pfs_cache_ent(c, ino, false);

		for (int n = 0; e && (e->state & (SPILLED | STUB)) == SPILLED && n < 200; n++) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 10 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&c->spill_cv, &c->lock, &ts);
			e = pfs_cache_ent(c, ino, false);
		}
		if (e && (e->state & STUB))
			ret = -EAGAIN;
	}
	pthread_mutex_unlock(&c->lock);
	if (ret < 0 || spill < 0)
		goto out; /* none live: the stub, as it is */
	fl = fcntl(fd, F_GETFL);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", spill);
	nfd = fl < 0 ? -1 : open(proc, (fl & (O_ACCMODE | O_APPEND | O_NONBLOCK)) | O_CLOEXEC);
	if (nfd < 0 || dup3(nfd, fd, O_CLOEXEC) < 0) {
		ret = -errno;
		goto out;
	}
	if ((flags & O_TRUNC) && (ftruncate(spill, 0) < 0 || ftruncate(cfd, 0) < 0)) {
		ret = -errno;
		goto out;
	}
	if (flags & O_TRUNC)
		size = 0;
	pthread_mutex_lock(&c->lock);
	mine = *pfs_cache_wfd_locked(c, fd);
	if (mine && mine->spill < 0) { /* a writer: it shares the spill file */
		mine->spill = spill;
		mine->cfd = cfd;
		mine->stub_size = size;
		spill = cfd = -1;
		__atomic_add_fetch(&c->spilled, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&c->lock);
out:
	if (nfd >= 0)
		close(nfd);
	if (spill >= 0)
		close(spill);
	if (cfd >= 0)
		close(cfd);
	return ret;
}
