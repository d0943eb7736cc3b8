/* evict: keeping the cache within its size (see evict.h). */
#include "cache/evict.h"
#include "cache/cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/statfs.h>

/* One file with data in the cache, reachable by its file handle (no path
 * is stable, and an open descriptor per file would not scale). */
struct res {
	struct res *hnext;            /* hash chain */
	struct res *older, *newer;    /* the LRU list */
	ino_t ino;
	struct file_handle *fh;
};

struct pfs_evict {
	struct pfs_cache *c;
	uint64_t size, high, low;     /* bytes: the filesystem's, the marks */
	pthread_mutex_t lock;
	int wakefd;                   /* an eventfd: released, or stopping */
	pthread_t thread;
	bool running, stopping;
	struct res *tab[NBUCKETS];
	struct res *oldest, *newest;
	uint64_t nres;
	uint64_t evictions, bytes;
};

int pfs_evict_new(struct pfs_evict **out, struct pfs_cache *c, uint64_t size)
{
	struct pfs_evict *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return -ENOMEM;
	ev->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ev->wakefd < 0) {
		int ret = -errno;

		free(ev);
		return ret;
	}
	ev->c = c;
	ev->size = size;
	/* The low mark leaves a quarter free for writers (the dirty limit's
	 * default); the high mark is where the background thread starts. */
	ev->high = size - size / 8;
	ev->low = size - size / 4;
	pthread_mutex_init(&ev->lock, NULL);
	*out = ev;
	return 0;
}

/* Under ev->lock. */
static struct res **slot(struct pfs_evict *ev, ino_t ino)
{
	struct res **p = &ev->tab[pfs_cache_bucket(ino)];

	while (*p && (*p)->ino != ino)
		p = &(*p)->hnext;
	return p;
}

static void lru_unlink(struct pfs_evict *ev, struct res *r)
{
	if (r->older)
		r->older->newer = r->newer;
	else
		ev->oldest = r->newer;
	if (r->newer)
		r->newer->older = r->older;
	else
		ev->newest = r->older;
	r->older = r->newer = NULL;
}

static void lru_push_newest(struct pfs_evict *ev, struct res *r)
{
	r->older = ev->newest;
	r->newer = NULL;
	if (ev->newest)
		ev->newest->newer = r;
	else
		ev->oldest = r;
	ev->newest = r;
}

/* Forget ino (under ev->lock). */
static void drop_locked(struct pfs_evict *ev, ino_t ino)
{
	struct res **p = slot(ev, ino), *r = *p;

	if (!r)
		return;
	*p = r->hnext;
	lru_unlink(ev, r);
	free(r->fh);
	free(r);
	ev->nres--;
}

void pfs_evict_touch(struct pfs_evict *ev, int fd, const struct stat *st)
{
	struct res **p, *r;
	struct file_handle *fh;
	int mnt;

	if (!ev)
		return;
	pthread_mutex_lock(&ev->lock);
	p = slot(ev, st->st_ino);
	if (*p) {
		lru_unlink(ev, *p);
		lru_push_newest(ev, *p);
		pthread_mutex_unlock(&ev->lock);
		return;
	}
	pthread_mutex_unlock(&ev->lock);
	/* New: its handle first (a syscall, outside the lock). */
	fh = malloc(sizeof(*fh) + MAX_HANDLE_SZ);
	r = calloc(1, sizeof(*r));
	if (!fh || !r)
		goto fail;
	fh->handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(fd, "", fh, &mnt, AT_EMPTY_PATH) < 0)
		goto fail; /* not evictable: it stays, as before eviction existed */
	r->ino = st->st_ino;
	/* Kept at its own size (a dozen bytes on tmpfs, not the maximum). */
	r->fh = malloc(sizeof(*fh) + fh->handle_bytes);
	if (!r->fh)
		goto fail;
	memcpy(r->fh, fh, sizeof(*fh) + fh->handle_bytes);
	free(fh);
	fh = NULL;
	pthread_mutex_lock(&ev->lock);
	p = slot(ev, st->st_ino);
	if (*p) { /* someone else made it meanwhile */
		pthread_mutex_unlock(&ev->lock);
		fh = r->fh;
		goto fail;
	}
	*p = r;
	lru_push_newest(ev, r);
	ev->nres++;
	pthread_mutex_unlock(&ev->lock);
	return;
fail:
	free(fh);
	free(r);
}

static uint64_t used(struct pfs_evict *ev);

static void kick(struct pfs_evict *ev)
{
	uint64_t one = 1;

	if (write(ev->wakefd, &one, sizeof(one)) < 0) {
		/* the counter is full: the thread is woken anyway */
	}
}

void pfs_evict_released(struct pfs_evict *ev, int fd)
{
	struct stat st;

	if (!ev || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_dev != ev->c->dev)
		return;
	if (st.st_blocks == 0) { /* no data: nothing to evict, no record */
		pthread_mutex_lock(&ev->lock);
		drop_locked(ev, st.st_ino);
		pthread_mutex_unlock(&ev->lock);
	} else {
		pfs_evict_touch(ev, fd, &st);
	}
	/* The thread acts only past the high mark: look here rather than
	 * wake it at every release (a thread switch per file). */
	if (ev->running && used(ev) > ev->high)
		kick(ev);
}

static uint64_t used(struct pfs_evict *ev)
{
	struct statfs sf;

	if (fstatfs(ev->c->root, &sf) < 0)
		return 0;
	return (uint64_t)(sf.f_blocks - sf.f_bfree) * (uint64_t)sf.f_bsize;
}

/* Turn the file of r back into a stub, if no one has it open: 1 evicted,
 * 0 busy (it is in use: the most recent now), -1 gone (forgotten). Under
 * c->load_lock, not ev->lock. */
static int evict_one(struct pfs_evict *ev, ino_t ino, struct file_handle *fh)
{
	struct pfs_cache *c = ev->c;
	struct stat st;
	int fd, ret = 0;

	fd = open_by_handle_at(c->root, fh, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return errno == ESTALE || errno == ENOENT ? -1 : 0;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_blocks == 0) {
		ret = -1;
		goto out;
	}
	/* Granted only while no one else has it open: the proof that no
	 * reader, writer, mapping, passthrough backing or pending write-back
	 * holds it. An open from now on waits until the lease is given back
	 * (SIGURG, ignored, rather than SIGIO, which would end the process). */
	if (fcntl(fd, F_SETSIG, SIGURG) < 0 || fcntl(fd, F_SETLEASE, F_WRLCK) < 0)
		goto out;
	pfs_cache_state_set(c, st.st_ino, STUB, 0);
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, st.st_size) < 0) {
		/* Still whole (or partly punched: the stub is loaded again). */
		fprintf(stderr, "prismfs: cache: cannot evict a file: %s\n", strerror(errno));
	} else {
		struct timespec ts[2] = {st.st_atim, st.st_mtim};

		futimens(fd, ts); /* punching moved its times: back */
		ret = 1;
	}
	fcntl(fd, F_SETLEASE, F_UNLCK);
out:
	close(fd);
	if (ret == 1) {
		pthread_mutex_lock(&ev->lock);
		ev->evictions++;
		ev->bytes += (uint64_t)st.st_blocks * 512u;
		pthread_mutex_unlock(&ev->lock);
	}
	return ret;
}

/* Files found busy in one pass before it gives up: a cache full of open or
 * dirty files costs a writer's open this much, not a look at every file. */
#define BUSY_MAX 64u

/* Evict least recently used files until the use is at most target. */
static void evict_to(struct pfs_evict *ev, uint64_t target)
{
	uint64_t tries, busy = 0;

	pthread_mutex_lock(&ev->lock);
	tries = ev->nres; /* each record once at most: busy ones go round */
	pthread_mutex_unlock(&ev->lock);
	while (tries-- && busy < BUSY_MAX && used(ev) > target) {
		struct file_handle *fh;
		struct res *r;
		ino_t ino;
		int ret;

		pthread_mutex_lock(&ev->lock);
		r = ev->oldest;
		if (!r) {
			pthread_mutex_unlock(&ev->lock);
			break;
		}
		ino = r->ino;
		fh = malloc(sizeof(*fh) + r->fh->handle_bytes);
		if (fh)
			memcpy(fh, r->fh, sizeof(*fh) + r->fh->handle_bytes);
		/* Tried now: at the other end, whatever comes of it. */
		lru_unlink(ev, r);
		lru_push_newest(ev, r);
		pthread_mutex_unlock(&ev->lock);
		if (!fh)
			break;
		ret = evict_one(ev, ino, fh);
		free(fh);
		if (ret == 0) {
			busy++;
		} else { /* evicted or gone: no data of it left */
			pthread_mutex_lock(&ev->lock);
			drop_locked(ev, ino);
			pthread_mutex_unlock(&ev->lock);
		}
	}
}

void pfs_evict_room_locked(struct pfs_evict *ev, uint64_t bytes)
{
	if (!ev)
		return;
	evict_to(ev, bytes >= ev->size ? 0 : ev->size - bytes);
}

void pfs_evict_for_writer(struct pfs_evict *ev)
{
	if (!ev || used(ev) <= ev->low)
		return;
	pthread_mutex_lock(&ev->c->load_lock);
	evict_to(ev, ev->low);
	pthread_mutex_unlock(&ev->c->load_lock);
}

/* Writes into the cache filesystem, seen as they happen (kernel
 * passthrough writes included): a filesystem-wide fanotify mark, reporting
 * file handles rather than opening descriptors. -1 where fanotify is not
 * allowed: the timer and the kicks remain. */
static int watch_writes(struct pfs_evict *ev)
{
	int fan = fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_FID | FAN_CLOEXEC | FAN_NONBLOCK,
				O_RDONLY | O_CLOEXEC);

	if (fan < 0)
		return -1;
	if (fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_MODIFY, ev->c->root,
			  NULL) < 0) {
		close(fan);
		return -1;
	}
	return fan;
}

static void drain(int fd)
{
	char buf[4096];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/* The background trigger: past the high mark, down to the low mark —
 * checked at every write into the cache (as fast as a writer fills it,
 * while clean data is there to give way), at each release, and twice a
 * second. */
static void *evictor(void *arg)
{
	struct pfs_evict *ev = arg;
	int fan = watch_writes(ev);

	for (;;) {
		struct pollfd p[2] = {{.fd = ev->wakefd, .events = POLLIN},
				      {.fd = fan, .events = POLLIN}};
		bool stop;

		poll(p, fan >= 0 ? 2 : 1, 500);
		pthread_mutex_lock(&ev->lock);
		stop = ev->stopping;
		pthread_mutex_unlock(&ev->lock);
		if (stop)
			break;
		if (p[0].revents & POLLIN)
			drain(ev->wakefd);
		if (fan >= 0 && (p[1].revents & POLLIN))
			drain(fan);
		if (used(ev) > ev->high) {
			pthread_mutex_lock(&ev->c->load_lock);
			evict_to(ev, ev->low);
			pthread_mutex_unlock(&ev->c->load_lock);
		}
	}
	if (fan >= 0)
		close(fan);
	return NULL;
}

int pfs_evict_start(struct pfs_evict *ev)
{
	int ret;

	if (!ev || ev->running)
		return 0;
	ret = -pthread_create(&ev->thread, NULL, evictor, ev);
	if (ret == 0)
		ev->running = true;
	return ret;
}

void pfs_evict_free(struct pfs_evict *ev)
{
	if (!ev)
		return;
	if (ev->running) {
		pthread_mutex_lock(&ev->lock);
		ev->stopping = true;
		pthread_mutex_unlock(&ev->lock);
		kick(ev);
		pthread_join(ev->thread, NULL);
	}
	for (unsigned i = 0; i < NBUCKETS; i++) {
		while (ev->tab[i]) {
			struct res *r = ev->tab[i];

			ev->tab[i] = r->hnext;
			free(r->fh);
			free(r);
		}
	}
	close(ev->wakefd);
	pthread_mutex_destroy(&ev->lock);
	free(ev);
}

void pfs_evict_counts(struct pfs_evict *ev, uint64_t *evictions, uint64_t *bytes)
{
	*evictions = *bytes = 0;
	if (!ev)
		return;
	pthread_mutex_lock(&ev->lock);
	*evictions = ev->evictions;
	*bytes = ev->bytes;
	pthread_mutex_unlock(&ev->lock);
}
