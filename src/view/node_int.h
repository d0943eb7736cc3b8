/* node_int: what the three files of the node table share. node.c: the
 * table, keyed by backing (dev, ino, ctx), and the names of its nodes;
 * node_pins.c: the node fds requests pin, and the sweep that keeps them
 * within the budget; node_open.c: what open files add to a node (opens
 * moved by a copy-up, writers, the shared passthrough backing id). Only
 * these three include it. */
#ifndef PFS_NODE_INT_H
#define PFS_NODE_INT_H

#include "view/view.h"

#define SHARDS 64

struct shard {
	pthread_mutex_t lock;
	struct pfs_node **buckets;
	size_t nbuckets; /* power of two */
	size_t count;
};

struct pfs_nodes {
	struct shard shards[SHARDS];
	pthread_mutex_t sweep_lock; /* one sweep at a time; its hand: */
	unsigned sweep_shard;
	size_t sweep_bucket;
};

/* ctx is left out of the hash on purpose: the nodes of one backing object
 * (a directory grafted at several places) share a chain, so they can be
 * found together and kept coherent. */
static inline uint64_t hash_key(dev_t dev, ino_t ino, uint64_t ctx)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev * 0xc2b2ae3d27d4eb4full;

	(void)ctx;
	return h ^ (h >> 29);
}

static inline struct shard *shard_of(struct pfs_fs *fs, const struct pfs_node *n)
{
	return &fs->nodes->shards[hash_key(n->dev, n->ino, n->ctx) % SHARDS];
}

static inline struct shard *shard_for(struct pfs_fs *fs, dev_t dev, ino_t ino, uint64_t ctx)
{
	return &fs->nodes->shards[hash_key(dev, ino, ctx) % SHARDS];
}

static inline size_t bucket_of(const struct shard *s, dev_t dev, ino_t ino, uint64_t ctx)
{
	return (hash_key(dev, ino, ctx) / SHARDS) & (s->nbuckets - 1);
}

/* node.c */
/* Drop one hold on n (and pins of its fd); free n once nothing holds it. */
void pfs_node_drop(struct pfs_fs *fs, struct pfs_node *n, uint32_t pins);
/* The fds n holds open: a layered node one per layer it has an object in. */
long pfs_node_nfds(struct pfs_fs *fs, const struct pfs_node *n);

/* node_pins.c */
/* Close node fds down to 15/16 of the budget (one sweep at a time). */
void pfs_nodes_sweep(struct pfs_fs *fs);

#endif
