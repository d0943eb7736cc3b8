/* cache_refresh: a filled directory listed again once its listing is older
 * than --mirror-ttl (or after prismfs sync), so that what changed on the
 * mirror behind the cache shows: names new there are filled (stubs), names
 * gone there are removed, and a clean file whose size or mtime changed
 * there becomes a stub of the new size (the next open loads the new data).
 *
 * Local changes come first, always. A directory is listed again only while
 * nothing waits to be written back (what the cache holds is then on the
 * mirror as well, so a difference is the mirror's doing); otherwise it stays
 * as it is and is tried at its next use. A name is removed or a file's data
 * dropped only under a write lease (fcntl(2), as evict.c takes it): granted
 * only while nobody has the file open, a pending write-back's descriptor
 * included. And only if the cache object was not changed since the listing
 * began (its ctime) and the queue took no op meanwhile: a change racing the
 * listing wins, the refresh leaves that name for next time. */
#include "cache/cache_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool ts_eq(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

static bool ts_before(struct timespec a, struct timespec b)
{
	return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

bool pfs_cache_dir_stale(struct pfs_cache *c, ino_t ino)
{
	unsigned gen = __atomic_load_n(&c->list_gen, __ATOMIC_RELAXED);
	struct ent *e;
	bool stale;

	pthread_mutex_lock(&c->lock);
	e = pfs_cache_ent(c, ino, false);
	stale = e && (e->state & FILLED) &&
		(e->gen != gen || (c->ttl_ns && now_ns() - e->listed_ns > c->ttl_ns));
	pthread_mutex_unlock(&c->lock);
	return stale;
}

void pfs_cache_dir_listed(struct pfs_cache *c, ino_t ino)
{
	struct ent *e;

	pthread_mutex_lock(&c->lock);
	e = pfs_cache_ent(c, ino, true);
	if (e) {
		e->gen = __atomic_load_n(&c->list_gen, __ATOMIC_RELAXED);
		e->listed_ns = now_ns();
	}
	pthread_mutex_unlock(&c->lock);
}

static void note(struct pfs_cache *c, const struct stat *have, const struct stat *mst)
{
	struct ent *e;

	pthread_mutex_lock(&c->lock);
	e = pfs_cache_ent(c, have->st_ino, true);
	if (e) {
		e->state |= LISTED;
		e->lsize = mst->st_size;
		e->lmtim = mst->st_mtim;
		e->lctim = have->st_ctim;
	}
	pthread_mutex_unlock(&c->lock);
}

void pfs_cache_file_listed(struct pfs_cache *c, int dirfd, const char *name,
			   const struct stat *mst)
{
	struct stat have;

	if (fstatat(dirfd, name, &have, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(have.st_mode))
		note(c, &have, mst);
}

void pfs_cache_file_loaded(struct pfs_cache *c, int fd)
{
	struct stat have;
	struct ent *e;

	if (fstat(fd, &have) < 0)
		return;
	pthread_mutex_lock(&c->lock);
	e = pfs_cache_ent(c, have.st_ino, false);
	if (e && (e->state & LISTED))
		e->lctim = have.st_ctim;
	pthread_mutex_unlock(&c->lock);
}

/* Has the queue taken an op, or does one wait, since seq was the last? */
static bool queue_moved(struct pfs_cache *c, uint64_t seq)
{
	struct pfs_wbq_stats s;

	if (!c->q)
		return false;
	pfs_wbq_stats(c->q, &s);
	return s.pending_ops != 0 || pfs_wbq_last(c->q) != seq;
}

/* name in dirfd opened under a write lease (nobody else has it open), or
 * -1. Given back by unlease(). */
static int lease(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (fcntl(fd, F_SETSIG, SIGURG) < 0 || fcntl(fd, F_SETLEASE, F_WRLCK) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void unlease(int fd)
{
	fcntl(fd, F_SETLEASE, F_UNLCK);
	close(fd);
}

/* The cache file name (have) whose mirror entry is e: a clean one the
 * mirror changed becomes a stub of its new size. 1 changed, 0 not. */
static int update_file(struct pfs_cache *c, int dirfd, const char *dir,
		       const struct pfs_mirror_ent *me, const struct stat *have,
		       struct timespec began, uint64_t seq)
{
	const struct stat *mst = &me->st;
	char path[PATH_MAX];
	struct ent *e;
	struct stat now;
	unsigned state = 0;
	bool listed, same, clean;
	int fd, ret;

	pthread_mutex_lock(&c->lock);
	e = pfs_cache_ent(c, have->st_ino, false);
	if (e)
		state = e->state;
	listed = e && (state & LISTED);
	same = listed && e->lsize == mst->st_size && ts_eq(e->lmtim, mst->st_mtim);
	clean = listed && ts_eq(e->lctim, have->st_ctim);
	pthread_mutex_unlock(&c->lock);
	if (same || (state & SPILLED))
		return 0;
	if (!listed || (!(state & STUB) && !clean)) {
		/* Written here and back since (the mirror's new size and
		 * time are the cache's own write-back's): noted, kept. */
		note(c, have, mst);
		return 0;
	}
	if (!ts_before(have->st_ctim, began) || queue_moved(c, seq))
		return 0;
	fd = lease(dirfd, me->name);
	if (fd < 0)
		return 0; /* in use: next time */
	if ((size_t)snprintf(path, sizeof(path), "%s%s%s", dir, *dir ? "/" : "", me->name) >=
	    sizeof(path)) {
		unlease(fd);
		return 0;
	}
	pfs_cache_state_set(c, have->st_ino, STUB, 0);
	ret = ftruncate(fd, 0) < 0 || ftruncate(fd, mst->st_size) < 0 ? -errno : 0;
	if (ret == 0)
		ret = c->mirror->ops->meta(c->mirror, path, mst, c->in, pfs_ref_fd(fd));
	if (ret == 0 && (c->mirror->ops->caps & PFS_MIRROR_LISTMETA)) {
		struct timespec ts[2] = {mst->st_atim, mst->st_mtim};

		futimens(fd, ts);
	}
	c->mirror->ops->forget(c->mirror, have->st_ino); /* its base is the old data */
	if (fstat(fd, &now) == 0)
		note(c, &now, mst);
	unlease(fd);
	if (ret < 0)
		fprintf(stderr, "prismfs: cache: %s changed on the mirror: %s\n", path,
			strerror(-ret));
	return 1;
}

/* name (have) is in the cache but no longer on the mirror. 1 removed, 0 not. */
static int remove_gone(struct pfs_cache *c, int dirfd, const char *name,
		       const struct stat *have, struct timespec began, uint64_t seq)
{
	int fd = -1, ret;

	if (!ts_before(have->st_ctim, began) || queue_moved(c, seq) ||
	    (pfs_cache_state(c, have->st_ino) & SPILLED))
		return 0;
	if (S_ISDIR(have->st_mode)) {
		/* Only an empty one: what a directory holds is each name's
		 * own business, settled when it is listed. */
		ret = unlinkat(dirfd, name, AT_REMOVEDIR);
	} else {
		if (S_ISREG(have->st_mode) && (fd = lease(dirfd, name)) < 0)
			return 0;
		ret = unlinkat(dirfd, name, 0);
	}
	if (ret == 0 && (S_ISDIR(have->st_mode) || have->st_nlink <= 1)) {
		pfs_cache_state_set(c, have->st_ino, 0, ~0u);
		if (S_ISREG(have->st_mode))
			c->mirror->ops->forget(c->mirror, have->st_ino);
	}
	if (fd >= 0)
		unlease(fd);
	return ret == 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct pfs_mirror_ent *)a)->name,
		      ((const struct pfs_mirror_ent *)b)->name);
}

int pfs_cache_refresh(struct pfs_cache *c, int dirfd, const struct stat *st)
{
	struct pfs_mirror_dir list = {0};
	struct pfs_mirror_ent key = {0};
	char path[PATH_MAX];
	struct timespec began;
	struct dirent *d;
	uint64_t seq = c->q ? pfs_wbq_last(c->q) : 0;
	DIR *dir = NULL;
	int ret, fd, changed = 0;

	/* Changes wait to be written back: the mirror is behind the cache,
	 * a difference would say nothing. Next use. */
	if (queue_moved(c, seq))
		return 0;
	clock_gettime(CLOCK_REALTIME_COARSE, &began);
	ret = pfs_cache_path(c, dirfd, NULL, path, sizeof(path));
	if (ret < 0)
		return ret == -EXDEV ? 0 : ret;
	ret = c->mirror->ops->list(c->mirror, path, &list);
	if (ret < 0) {
		/* Gone there, or the mirror cannot be reached: the cache
		 * serves what it has (a lookup does not fail for it), and
		 * asks again after another TTL, not at every lookup. */
		pfs_mirror_dir_free(&list);
		pfs_cache_dir_listed(c, st->st_ino);
		return 0;
	}
	if (list.n)
		qsort(list.v, list.n, sizeof(*list.v), by_name);
	for (size_t i = 0; i < list.n; i++) {
		const struct pfs_mirror_ent *me = &list.v[i];
		struct stat have;

		if (fstatat(dirfd, me->name, &have, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT || queue_moved(c, seq))
				continue;
			if (pfs_cache_fill_one(c, dirfd, path, me) == 0)
				changed++;
		} else if (S_ISREG(have.st_mode) && S_ISREG(me->st.st_mode) &&
			   have.st_nlink == 1) {
			changed += update_file(c, dirfd, path, me, &have, began, seq);
		}
	}
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 && !(dir = fdopendir(fd)))
		close(fd);
	while (dir && (d = readdir(dir))) {
		struct stat have;

		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		key.name = d->d_name;
		if (list.n && bsearch(&key, list.v, list.n, sizeof(*list.v), by_name))
			continue;
		if (fstatat(dirfd, d->d_name, &have, AT_SYMLINK_NOFOLLOW) == 0)
			changed += remove_gone(c, dirfd, d->d_name, &have, began, seq);
	}
	if (dir)
		closedir(dir);
	pfs_mirror_dir_free(&list);
	pfs_cache_dir_listed(c, st->st_ino);
	(void)changed; /* (the tmpfs moved the directory's mtime if names came or went:
			* the kernel drops its cached listing at its next look) */
	return 0;
}
