/* node_pins: the O_PATH fd of each node, pinned by the requests that use
 * it and reopened from its file handle once the budget sweep (a clock
 * hand over the table) has closed it. */
#include "view/node_int.h"
#include "layers/layer.h"
#include "view/nodefd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* The nodes whose fds the request on this thread uses: pinned (no sweep
 * closes them) and held (no forget frees them) until it ends. */
#define INLINE_PINS 32
static __thread struct {
	struct pfs_node *v[INLINE_PINS];
	struct pfs_node **more; /* past INLINE_PINS; freed at request end */
	size_t n, cap;
} tl_pins;

static void pins_add(struct pfs_node *n)
{
	size_t i = tl_pins.n;

	if (i < INLINE_PINS) {
		tl_pins.v[i] = n;
	} else {
		if (i - INLINE_PINS == tl_pins.cap) {
			size_t cap = tl_pins.cap ? tl_pins.cap * 2 : 64;
			struct pfs_node **m = realloc(tl_pins.more, cap * sizeof(*m));

			if (!m)
				abort(); /* a pin that cannot be dropped would leak n */
			tl_pins.more = m;
			tl_pins.cap = cap;
		}
		tl_pins.more[i - INLINE_PINS] = n;
	}
	tl_pins.n++;
}

/* Does a layered node reopen its object of layer i? A directory merges
 * all its layers; a file shows its top one only (a lower one left behind
 * by a copy-up is closed for good). */
static bool ln_keeps(const struct pfs_node *n, size_t i)
{
	if (n->type == S_IFDIR || (n->ln->meta && n->type == S_IFREG)) /* a metacopy's data too */
		return i >= n->ln->top && i <= n->ln->bottom;
	return i == n->ln->top;
}

/* A pinned layered node whose fds the budget closed: all reopened, so that
 * whoever reads ln->fd[] now finds them open. */
static int reopen_layered(struct pfs_fs *fs, struct pfs_node *n, struct shard *s)
{
	struct pfs_lnode *ln = n->ln;
	size_t nl = fs->layers->n;
	int fds[PFS_LAYERS_MAX], ret = 0;

	for (size_t i = 0; i < nl; i++)
		fds[i] = -1;
	for (size_t i = 0; i < nl && ret == 0; i++) {
		if (__atomic_load_n(&ln->fd[i], __ATOMIC_ACQUIRE) != PFS_LFD_CLOSED)
			continue;
		fds[i] = pfs_nodefd_reopen(fs, ln->hs[i].dev, ln->hs[i].h);
		if (fds[i] < 0)
			ret = fds[i], fds[i] = -1;
	}
	if (ret == 0) {
		pthread_mutex_lock(&s->lock);
		if (n->bfd < 0) { /* else another request reopened them first */
			for (size_t i = 0; i < nl; i++) {
				if (fds[i] >= 0 && ln->fd[i] == PFS_LFD_CLOSED) {
					__atomic_store_n(&ln->fd[i], fds[i], __ATOMIC_RELEASE);
					fds[i] = -1;
					__atomic_add_fetch(&fs->nfd->held, 1, __ATOMIC_RELAXED);
				}
			}
			__atomic_store_n(&n->bfd, ln->fd[ln->top], __ATOMIC_RELEASE);
		}
		ret = n->bfd;
		pthread_mutex_unlock(&s->lock);
	}
	for (size_t i = 0; i < nl; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return ret;
}

/* A synthetic node's fd again: a copy of the empty directory's. */
static int dup_empty(struct pfs_fs *fs)
{
	int fd = fcntl(fs->empty_fd, F_DUPFD_CLOEXEC, 0);

	return fd < 0 ? -errno : fd;
}

int pfs_node_fd(struct pfs_fs *fs, struct pfs_node *n)
{
	struct shard *s;
	int fd, nfd;

	if (__atomic_load_n(&n->fd_fixed, __ATOMIC_ACQUIRE))
		return __atomic_load_n(&n->bfd, __ATOMIC_ACQUIRE);
	/* Pinned by this request already (a READDIRPLUS looks up every entry
	 * in one parent): its fd stays until the request ends. */
	for (size_t i = 0; i < tl_pins.n && i < INLINE_PINS; i++) {
		if (tl_pins.v[i] == n) {
			fd = __atomic_load_n(&n->bfd, __ATOMIC_ACQUIRE);
			if (fd >= 0)
				return fd;
			break;
		}
	}
	s = shard_of(fs, n);
	pthread_mutex_lock(&s->lock);
	if (n->fd_fixed) {
		fd = n->bfd;
		pthread_mutex_unlock(&s->lock);
		return fd;
	}
	n->pins++;
	n->refs++;
	n->fd_used = true;
	fd = n->bfd;
	pthread_mutex_unlock(&s->lock);
	pins_add(n);
	if (fd >= 0)
		return fd;
	if (n->ln)
		return reopen_layered(fs, n, s);
	nfd = n->dev == 0 ? dup_empty(fs) : pfs_nodefd_reopen(fs, n->dev, n->handle);
	if (nfd < 0)
		return nfd;
	pthread_mutex_lock(&s->lock);
	if (n->bfd < 0) {
		n->bfd = nfd;
		__atomic_add_fetch(&fs->nfd->held, 1, __ATOMIC_RELAXED);
	}
	fd = n->bfd;
	pthread_mutex_unlock(&s->lock);
	if (fd != nfd)
		close(nfd); /* another request reopened it first */
	return fd;
}

void pfs_node_pin(struct pfs_fs *fs, struct pfs_node *n)
{
	struct shard *s = shard_of(fs, n);

	pthread_mutex_lock(&s->lock);
	n->pins++;
	pthread_mutex_unlock(&s->lock);
}

void pfs_node_unpin(struct pfs_fs *fs, struct pfs_node *n)
{
	struct shard *s = shard_of(fs, n);

	pthread_mutex_lock(&s->lock);
	n->pins--;
	pthread_mutex_unlock(&s->lock);
	__atomic_store_n(&fs->nfd->futile, 0, __ATOMIC_RELAXED); /* worth a sweep again */
}

/* Under s's lock: the fds of layered node n that it would reopen get a
 * handle (once), then all its fds are closed. */
static bool sweep_layered(struct pfs_fs *fs, struct pfs_node *n)
{
	struct pfs_lnode *ln = n->ln;
	size_t nl = fs->layers->n;
	long closed = 0;

	if (!ln->hs && !(ln->hs = calloc(nl, sizeof(*ln->hs))))
		return false;
	for (size_t i = 0; i < nl; i++) {
		struct stat st;
		int ret;

		if (ln->fd[i] < 0 || ln->hs[i].h || !ln_keeps(n, i))
			continue;
		ret = fstat(ln->fd[i], &st) < 0 ? -errno
						 : pfs_nodefd_handle(fs, ln->fd[i], st.st_dev,
								     S_ISDIR(st.st_mode), &ln->hs[i].h);
		if (ret == -EAGAIN)
			return false;
		if (ret < 0) { /* it cannot be reopened: it keeps its fds for good */
			__atomic_store_n(&n->fd_fixed, true, __ATOMIC_RELEASE);
			__atomic_sub_fetch(&fs->nfd->held, pfs_node_nfds(fs, n), __ATOMIC_RELAXED);
			return false;
		}
		ln->hs[i].dev = st.st_dev;
	}
	for (size_t i = 0; i < nl; i++) {
		if (ln->fd[i] < 0)
			continue;
		close(ln->fd[i]);
		__atomic_store_n(&ln->fd[i], ln_keeps(n, i) ? PFS_LFD_CLOSED : -1, __ATOMIC_RELAXED);
		closed++;
	}
	__atomic_store_n(&n->bfd, -1, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&fs->nfd->held, closed, __ATOMIC_RELAXED);
	__atomic_add_fetch(&fs->nfd->closed, closed, __ATOMIC_RELAXED);
	return true;
}

/* Under s's lock: close n's fd if the sweep may. A node used since the hand
 * last passed gets another round (the clock algorithm). */
static bool sweep_one(struct pfs_fs *fs, struct pfs_node *n)
{
	int ret;

	if (n->fd_fixed || n->bfd < 0 || n->pins)
		return false;
	if (n->fd_used) {
		n->fd_used = false;
		return false;
	}
	if (n->ln)
		return sweep_layered(fs, n);
	if (!n->handle && n->dev != 0) {
		ret = pfs_nodefd_handle(fs, n->bfd, n->dev, n->type == S_IFDIR, &n->handle);
		if (ret == -EAGAIN)
			return false;
		if (ret < 0) {
			/* It cannot be reopened: it keeps its fd for good. */
			__atomic_store_n(&n->fd_fixed, true, __ATOMIC_RELEASE);
			__atomic_sub_fetch(&fs->nfd->held, 1, __ATOMIC_RELAXED);
			return false;
		}
	}
	close(n->bfd);
	n->bfd = -1;
	__atomic_sub_fetch(&fs->nfd->held, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&fs->nfd->closed, 1, __ATOMIC_RELAXED);
	return true;
}

/* Close node fds down to 15/16 of the budget: one sweep then lasts a while.
 * At most two turns of the hand (the first may only clear used marks). */
void pfs_nodes_sweep(struct pfs_fs *fs)
{
	struct pfs_nodes *t = fs->nodes;
	struct pfs_nodefd *b = fs->nfd;
	long target = b->budget - b->budget / 16;
	size_t shards_left = 2 * SHARDS + 1;

	if (pthread_mutex_trylock(&t->sweep_lock) != 0)
		return; /* another thread is at it */
	while (shards_left && __atomic_load_n(&b->held, __ATOMIC_RELAXED) > target) {
		struct shard *s = &t->shards[t->sweep_shard];

		pthread_mutex_lock(&s->lock);
		for (; t->sweep_bucket < s->nbuckets; t->sweep_bucket++) {
			for (struct pfs_node *n = s->buckets[t->sweep_bucket]; n; n = n->hnext)
				sweep_one(fs, n);
			if (__atomic_load_n(&b->held, __ATOMIC_RELAXED) <= target)
				break;
		}
		if (t->sweep_bucket >= s->nbuckets) {
			t->sweep_bucket = 0;
			t->sweep_shard = (t->sweep_shard + 1) % SHARDS;
			shards_left--;
		}
		pthread_mutex_unlock(&s->lock);
	}
	{
		long left = __atomic_load_n(&b->held, __ATOMIC_RELAXED);

		__atomic_store_n(&b->futile, left > target ? left + 16 + b->budget / 16 : 0,
				 __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&t->sweep_lock);
}

void pfs_node_request_done(struct pfs_fs *fs)
{
	for (size_t i = 0; i < tl_pins.n; i++)
		pfs_node_drop(fs, i < INLINE_PINS ? tl_pins.v[i] : tl_pins.more[i - INLINE_PINS], 1);
	tl_pins.n = 0;
	free(tl_pins.more);
	tl_pins.more = NULL;
	tl_pins.cap = 0;
	if (fs->nfd) {
		long held = __atomic_load_n(&fs->nfd->held, __ATOMIC_RELAXED);

		if (held > fs->nfd->budget && held > __atomic_load_n(&fs->nfd->futile,
								       __ATOMIC_RELAXED))
			pfs_nodes_sweep(fs);
	}
}
