/* inval: a queue of kernel cache invalidations for the nodes that share a
 * backing object. Requests that change a name or attributes queue them;
 * one thread sends them, outside any request, since the kernel takes the
 * directory's lock to drop a name and a request may hold it. Attributes
 * alone are dropped at once (pfs_inval_attrs): that takes no lock.
 *
 * Why the queue is the view's and only the notification the transport's
 * (fs->kernel, registered by fuse/backing.c): what to invalidate (a node's
 * other places, the mapped names a change reaches) and how long a request
 * waits for it are questions about the namespace; the transport only
 * knows how to tell the kernel. */
#include "view/view.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long a request that changed a shared object waits for the other
 * places' invalidations before it answers. They are normally sent within
 * microseconds; the bound is for a rename between two places of one
 * directory, where the kernel holds the very lock the invalidation needs
 * until the rename is answered. */
#define SYNC_WAIT_NS 50000000L

struct inval_item {
	struct inval_item *next;
	struct pfs_node *node; /* held */
	char name[];           /* "" for the node's own attributes */
};

struct pfs_inval {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_cond_t sent_cond;
	struct inval_item *head, **tail;
	uint64_t queued, sent;   /* items queued and sent (or dropped) so far */
	bool stop;
	pthread_t thread;
};

static void *run(void *arg)
{
	struct pfs_fs *fs = arg;
	struct pfs_inval *q = fs->inval;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		struct inval_item *it;

		while (!q->head && !q->stop)
			pthread_cond_wait(&q->cond, &q->lock);
		if (!q->head)
			break;
		it = q->head;
		q->head = it->next;
		if (!q->head)
			q->tail = &q->head;
		pthread_mutex_unlock(&q->lock);
		if (!q->stop) {
			fuse_ino_t ino = pfs_ino_of(fs, it->node);

			if (it->name[0])
				fs->kernel->inval_entry(fs->kernel_ctx, ino, it->name,
							strlen(it->name));
			fs->kernel->inval_inode(fs->kernel_ctx, ino, 0, 0);
		}
		pfs_node_release(fs, it->node);
		free(it);
		pthread_mutex_lock(&q->lock);
		q->sent++;
		pthread_cond_broadcast(&q->sent_cond);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

int pfs_inval_start(struct pfs_fs *fs)
{
	struct pfs_inval *q = calloc(1, sizeof(*q));
	int ret;

	if (!q)
		return -ENOMEM;
	pthread_condattr_t ca;

	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->sent_cond, &ca);
	pthread_condattr_destroy(&ca);
	q->tail = &q->head;
	fs->inval = q;
	ret = pthread_create(&q->thread, NULL, run, fs);
	if (ret) {
		fs->inval = NULL;
		pthread_cond_destroy(&q->sent_cond);
		pthread_cond_destroy(&q->cond);
		pthread_mutex_destroy(&q->lock);
		free(q);
		return -ret;
	}
	return 0;
}

void pfs_inval_stop(struct pfs_fs *fs)
{
	struct pfs_inval *q = fs->inval;

	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	q->stop = true;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	pthread_join(q->thread, NULL); /* drains: releases what is queued */
	fs->inval = NULL;
	pthread_cond_destroy(&q->sent_cond);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

/* Queues an invalidation of `name` in `held` (or of held's attributes)
 * and passes the reference on; returns its sequence number, or 0 (and
 * drops the reference) when out of memory. */
static uint64_t enqueue(struct pfs_fs *fs, struct pfs_node *held, const char *name)
{
	struct pfs_inval *q = fs->inval;
	size_t l = name ? strlen(name) : 0;
	struct inval_item *it = malloc(sizeof(*it) + l + 1);
	uint64_t seq;

	if (!it) {
		pfs_node_release(fs, held);
		return 0;
	}
	it->next = NULL;
	it->node = held;
	memcpy(it->name, name ? name : "", l + 1);
	pthread_mutex_lock(&q->lock);
	*q->tail = it;
	q->tail = &it->next;
	seq = ++q->queued;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	return seq;
}

static void wait_sent(struct pfs_inval *q, uint64_t seq)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += SYNC_WAIT_NS;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&q->lock);
	while (q->sent < seq && !q->stop)
		if (pthread_cond_timedwait(&q->sent_cond, &q->lock, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&q->lock);
}

uint64_t pfs_inval_entry(struct pfs_fs *fs, struct pfs_node *parent, const char *name)
{
	if (!fs->inval)
		return 0;
	pfs_node_hold(fs, parent);
	return enqueue(fs, parent, name);
}

void pfs_view_changed(struct pfs_fs *fs, struct pfs_node *n, const char *name)
{
	struct pfs_inval *q = fs->inval;
	struct pfs_node *sib[16];
	uint64_t last = 0;
	size_t count;

	if (!q)
		return; /* no table: every object has one node */
	count = pfs_node_siblings(fs, n, sib, 16);
	for (size_t i = 0; i < count; i++) {
		uint64_t seq = enqueue(fs, sib[i], name);

		last = seq ? seq : last;
	}
	/* The name may be (or lead to) a mapping's target: the mapped names
	 * showing the object it named must drop it too. */
	if (name && fs->watch) {
		uint64_t seq = pfs_view_targets_changed(fs, n, name);

		last = seq ? seq : last;
	}
	/* The caller answers its request next: once it has, the change must
	 * show at every place of the object, as on one filesystem. */
	if (last)
		wait_sent(q, last);
}

void pfs_inval_attrs(struct pfs_fs *fs, struct pfs_node *n, bool self)
{
	struct pfs_node *sib[16];
	size_t count = fs->watch ? pfs_node_siblings(fs, n, sib, 16) : 0;

	/* Sent from the request itself, before its answer: with a negative
	 * offset the kernel only marks the attributes stale (under the inode's
	 * spinlock; no inode, page or directory lock, no writeback: there is
	 * no writeback cache), so nothing the request holds can block it. The
	 * kernel also drops attributes still in flight, as older than this. */
	if (self)
		fs->kernel->inval_inode(fs->kernel_ctx, pfs_ino_of(fs, n), -1, 0);
	for (size_t i = 0; i < count; i++) {
		fs->kernel->inval_inode(fs->kernel_ctx, pfs_ino_of(fs, sib[i]), -1, 0);
		pfs_node_release(fs, sib[i]);
	}
}
