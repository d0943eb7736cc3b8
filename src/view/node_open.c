/* node_open: what open files add to a node. On a layered mount a copy-up
 * moves the opens of the lower object to the upper copy (as overlayfs
 * does); writers the kernel may not hear of keep the node's attributes
 * uncached; and the opens of a node share one kernel passthrough backing
 * id, made and closed through the transport's table (fs->kernel). All
 * under the node's shard lock. */
#include "view/node_int.h"
#include "layers/layer.h"
#include "view/nodefd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void move_opens_locked(struct pfs_lnode *ln, int obj);

/* n's data is now the upper object obj's: the daemon's opens of the lower
 * one move to it; a kernel passthrough backing (--lower-passthrough) cannot
 * move, so the kernel's inode is left to its opens and n must be retired
 * (true): later opens look the name up again. */
static bool moved_data_locked(struct pfs_node *n, int obj)
{
	move_opens_locked(n->ln, obj);
	if (!n->backing_refs)
		return false;
	n->backing_stale = true;
	return true;
}

/* An open's fd (reopened from n's object a moment ago) is not n's data
 * object any more: a copy-up came in between, and the fd may be the lower
 * file, which must not become the backing that later opens (writers) of n
 * share. Compared only once n has moved up (top 0, data its own). */
static bool data_left_locked(struct pfs_node *n, int fd)
{
	struct stat a, b;

	if (!n->ln || !n->ln->moved || n->ln->top != 0 || n->ln->meta)
		return false;
	if (fstat(fd, &a) < 0 || fstat(n->ln->fd[0], &b) < 0)
		return false; /* as before: nothing to compare */
	return a.st_dev != b.st_dev || a.st_ino != b.st_ino;
}

bool pfs_node_moved_up(struct pfs_fs *fs, struct pfs_node *n, int fd)
{
	struct shard *s;
	bool stale = false;

	if (n == fs->root) {
		__atomic_store_n(&n->ln->fd[0], fd, __ATOMIC_RELEASE);
		__atomic_store_n(&n->bfd, fd, __ATOMIC_RELEASE);
		__atomic_store_n(&n->ln->top, 0, __ATOMIC_RELEASE);
		return false;
	}
	/* n is pinned by the copy-up: no sweep closes its fds meanwhile. The
	 * lower fd stays (a request may still use it) until the next sweep. */
	s = shard_of(fs, n);
	pthread_mutex_lock(&s->lock);
	__atomic_store_n(&n->ln->fd[0], fd, __ATOMIC_RELEASE);
	__atomic_store_n(&n->bfd, fd, __ATOMIC_RELEASE);
	__atomic_store_n(&n->ln->top, 0, __ATOMIC_RELEASE);
	n->ln->moved = true;
	if (!n->fd_fixed)
		__atomic_add_fetch(&fs->nfd->held, 1, __ATOMIC_RELAXED);
	if (n->type == S_IFREG && !n->ln->meta) /* a metacopy's data stays below */
		stale = moved_data_locked(n, fd);
	pthread_mutex_unlock(&s->lock);
	if (stale)
		pfs_node_retire(fs, n);
	return stale;
}

bool pfs_node_data_up(struct pfs_fs *fs, struct pfs_node *n)
{
	struct shard *s = shard_of(fs, n);
	bool stale;

	pthread_mutex_lock(&s->lock);
	__atomic_store_n(&n->ln->meta, false, __ATOMIC_RELEASE);
	n->ln->moved = true;
	stale = moved_data_locked(n, n->ln->fd[0]);
	pthread_mutex_unlock(&s->lock);
	if (stale)
		pfs_node_retire(fs, n);
	return stale;
}

int pfs_node_open_track(struct pfs_fs *fs, struct pfs_node *n, int fd, bool lower)
{
	struct shard *s = shard_of(fs, n);
	struct pfs_lnode *ln = n->ln;
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	if (lower && ln->top == 0 && !ln->meta) {
		ret = -EAGAIN;
	} else if (lower && ln->nopens == ln->aopens) {
		uint16_t na = ln->aopens ? (uint16_t)(ln->aopens * 2) : 4;
		int *no = na > ln->aopens ? realloc(ln->opens, na * sizeof(int)) : NULL;

		if (!no)
			ret = -ENOMEM;
		else
			ln->opens = no, ln->aopens = na;
	}
	if (ret == 0) {
		if (lower)
			ln->opens[ln->nopens++] = fd;
		ln->cached++;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void pfs_node_open_untrack(struct pfs_fs *fs, struct pfs_node *n, int fd)
{
	struct shard *s = shard_of(fs, n);
	struct pfs_lnode *ln = n->ln;

	pthread_mutex_lock(&s->lock);
	for (uint16_t i = 0; i < ln->nopens; i++) {
		if (ln->opens[i] == fd) {
			ln->opens[i] = ln->opens[--ln->nopens];
			break;
		}
	}
	if (ln->cached)
		ln->cached--;
	pthread_mutex_unlock(&s->lock);
}

bool pfs_node_has_cached_opens(struct pfs_fs *fs, struct pfs_node *n)
{
	struct shard *s = shard_of(fs, n);
	bool any;

	pthread_mutex_lock(&s->lock);
	any = n->ln->cached > 0;
	pthread_mutex_unlock(&s->lock);
	return any;
}

/* The open descriptors of n's lower object now read its upper copy: each
 * is replaced in place (same number), so requests in flight or to come
 * on it see the new file, as overlayfs reopens under its open files. */
static void move_opens_locked(struct pfs_lnode *ln, int obj)
{
	char p[32];

	snprintf(p, sizeof(p), "/proc/self/fd/%d", obj);
	for (uint16_t i = 0; i < ln->nopens; i++) {
		int fl = fcntl(ln->opens[i], F_GETFL), nfd;

		if (fl < 0)
			continue;
		nfd = open(p, (fl & (O_ACCMODE | O_APPEND | O_NONBLOCK)) | O_CLOEXEC);
		if (nfd < 0)
			continue; /* keeps reading the lower copy */
		dup3(nfd, ln->opens[i], O_CLOEXEC);
		close(nfd);
	}
	ln->nopens = 0;
}

int pfs_node_backing_get(struct pfs_fs *fs, struct pfs_node *n, int fd)
{
	return pfs_node_backing_get_or_daemon(fs, n, fd, false);
}

/* How long an open that wants the daemon's data path waits for the
 * passthrough opens of its node to be released (in 1 ms steps). */
#define DAEMON_WAIT_MS 2000

/* One decision under the shard lock: the kernel refuses a passthrough open
 * of an inode open without it (and the reverse), so the choice between the
 * two must not race with another open of the node.
 *
 * The kernel sends a RELEASE after close(2) has returned, by then it has
 * already left passthrough mode for the inode: a writer opening right
 * after a reader's close would still find the reader's backing counted,
 * get a passthrough open, and write into memory by the kernel's hand for
 * as long as it stays open, unseen by the dirty limit and by the spill (a
 * short write once memory is full). So an open that wants the daemon waits
 * for the passthrough opens counted to be released, for a bounded time,
 * when each of them was closed already (FLUSH came: such a store asks
 * for it from readers too); an open that is really live keeps it
 * passthrough at once (documented in cache/evict.h and README). */
int pfs_node_backing_get_or_daemon(struct pfs_fs *fs, struct pfs_node *n, int fd, bool daemon)
{
	struct shard *s = shard_of(fs, n);
	int id;
	int waited = 0;

	pthread_mutex_lock(&s->lock);
	while (daemon && n->backing_refs && !n->daemon_opens &&
	       n->backing_closing >= n->backing_refs && waited++ < DAEMON_WAIT_MS) {
		pthread_mutex_unlock(&s->lock);
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
		pthread_mutex_lock(&s->lock);
	}
	if (data_left_locked(n, fd)) {
		pthread_mutex_unlock(&s->lock);
		return -EAGAIN; /* the caller opens the copy instead */
	}
	if (n->backing_refs == 0 && (daemon || n->daemon_opens)) {
		n->daemon_opens++;
		pthread_mutex_unlock(&s->lock);
		return PFS_BACKING_DAEMON;
	}
	if (n->backing_stale) {
		/* The kernel's inode still has the old object as its backing and
		 * takes no other while it is open: the caller must make it look up
		 * the name again (a fresh node, a fresh inode). */
		pthread_mutex_unlock(&s->lock);
		return -ESTALE;
	}
	if (n->backing_refs == 0) {
		id = fs->kernel->backing_open(fs->kernel_ctx, fd);
		if (id < 0) {
			pthread_mutex_unlock(&s->lock);
			return id;
		}
		n->backing_id = id;
	}
	n->backing_refs++;
	id = n->backing_id;
	pthread_mutex_unlock(&s->lock);
	return id;
}

void pfs_node_backing_put(struct pfs_fs *fs, struct pfs_node *n)
{
	struct shard *s = shard_of(fs, n);

	pthread_mutex_lock(&s->lock);
	if (n->backing_refs)
		n->backing_refs--;
	/* A handle's FLUSH comes before its RELEASE (close(2), then the last
	 * reference going): the one released is taken for a closed one. */
	if (n->backing_closing)
		n->backing_closing--;
	if (n->backing_closing > n->backing_refs)
		n->backing_closing = n->backing_refs;
	if (n->backing_refs == 0 && n->backing_id) {
		fs->kernel->backing_close(fs->kernel_ctx, n->backing_id);
		n->backing_id = 0;
		n->backing_stale = false;
	}
	pthread_mutex_unlock(&s->lock);
}

void pfs_node_backing_closing(struct pfs_fs *fs, struct pfs_node *n)
{
	struct shard *s = shard_of(fs, n);

	pthread_mutex_lock(&s->lock);
	if (n->backing_closing < n->backing_refs)
		n->backing_closing++;
	pthread_mutex_unlock(&s->lock);
}

void pfs_node_daemon_put(struct pfs_fs *fs, struct pfs_node *n)
{
	struct shard *s = shard_of(fs, n);

	pthread_mutex_lock(&s->lock);
	if (n->daemon_opens)
		n->daemon_opens--;
	pthread_mutex_unlock(&s->lock);
}

void pfs_node_writer_get(struct pfs_fs *fs, struct pfs_node *n)
{
	struct shard *s = shard_of(fs, n);

	pthread_mutex_lock(&s->lock);
	if (n->lingering) { /* the open takes its count over */
		__atomic_store_n(&n->lingering, false, __ATOMIC_RELEASE);
	} else {
		__atomic_add_fetch(&n->writers, 1, __ATOMIC_RELEASE);
		__atomic_add_fetch(&fs->writers, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&s->lock);
}

static bool writer_drop_locked(struct pfs_fs *fs, struct pfs_node *n)
{
	__atomic_sub_fetch(&fs->writers, 1, __ATOMIC_RELEASE);
	return __atomic_sub_fetch(&n->writers, 1, __ATOMIC_RELEASE) == 0;
}

bool pfs_node_writer_put(struct pfs_fs *fs, struct pfs_node *n, bool linger)
{
	struct shard *s = shard_of(fs, n);
	bool done = false;

	pthread_mutex_lock(&s->lock);
	if (linger && n->writers == 1)
		__atomic_store_n(&n->lingering, true, __ATOMIC_RELEASE);
	else
		done = writer_drop_locked(fs, n);
	pthread_mutex_unlock(&s->lock);
	return done;
}

bool pfs_node_settle(struct pfs_fs *fs, struct pfs_node *n)
{
	struct shard *s = shard_of(fs, n);
	bool done = false;

	pthread_mutex_lock(&s->lock);
	if (n->lingering) { /* else an open took it over meanwhile */
		__atomic_store_n(&n->lingering, false, __ATOMIC_RELEASE);
		done = writer_drop_locked(fs, n);
	}
	pthread_mutex_unlock(&s->lock);
	return done;
}

bool pfs_node_writing(struct pfs_fs *fs, struct pfs_node *n)
{
	struct shard *s;
	struct pfs_node *m;
	bool found = false;

	/* The common case, no such writer anywhere: one load. */
	if (n->type != S_IFREG || !__atomic_load_n(&fs->writers, __ATOMIC_ACQUIRE))
		return false;
	if (__atomic_load_n(&n->writers, __ATOMIC_ACQUIRE))
		return true;
	if (!fs->watch)
		return false; /* without a table an object has one node */
	/* Its other places (one chain: ctx is not in the hash). */
	s = shard_of(fs, n);
	pthread_mutex_lock(&s->lock);
	for (m = s->buckets[bucket_of(s, n->dev, n->ino, n->ctx)]; m && !found; m = m->hnext)
		found = m->dev == n->dev && m->ino == n->ino &&
			__atomic_load_n(&m->writers, __ATOMIC_ACQUIRE);
	pthread_mutex_unlock(&s->lock);
	return found;
}
