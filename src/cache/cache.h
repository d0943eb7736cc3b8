/* cache: the memory cache as a store (store/store.h) — a tree in memory
 * (a tmpfs the daemon owns) that the view serves as it serves any
 * directory, loaded lazily from a mirror and written back to it.
 *
 * The view never knows: it calls the store, and the cache store passes
 * each call to the tmpfs (the local store), and around it
 *   - before a name in a directory is used, fills that directory from the
 *     mirror the first time (names, modes, owners, times, xattrs; files as
 *     stubs of the right size with no data);
 *   - before a stub file is opened for its data, loads its data;
 *   - after a change, queues it for write-back (cache/wbq.h), to the
 *     mirror (mirror/mirror.h, its only way there) in the order it was made;
 *   - a file opened for writing is queued when it is released, when it is
 *     fsync'ed (which then waits for it to be durable on the mirror) or
 *     truncated.
 *
 * Lock order: c->load_lock -> c->lock; the queue's and the mirror's locks
 * are leaves. c->load_lock (one fill or load at a time) is held across
 * reading the mirror, never on the path of a file already in the cache. */
#ifndef PFS_CACHE_H
#define PFS_CACHE_H

#include "mirror/mirror.h"
#include "store/store.h"

#include <stdbool.h>
#include <stdint.h>

struct pfs_journal;

struct pfs_cache_opts {
	const char *mirror;       /* the mirror's address (mirror/mirror.h) */
	const struct pfs_mirror_opts *mirror_opts; /* may be NULL */
	uint64_t max_dirty;       /* bytes; 0: no limit */
	uint64_t delay_ns;        /* --write-back DELAY */
	bool lazy;                /* false: fill every directory at start */
	uint64_t size;            /* the memory filesystem's; 0: nothing is evicted */
	uint64_t ttl_ns;          /* --mirror-ttl: a directory listed again once its
				   * listing is older (cache_refresh.c); 0: never */
	/* --journal: every op recorded there before the reply; the cache
	 * store owns it once made (cache/journal.h). NULL: none. */
	struct pfs_journal *journal;
};

/* A cache store over the directory root (a descriptor of the cache's own
 * filesystem, owned by the store from now on), written back to o->mirror
 * through inner, which the cache store owns (and frees) once made. 0 or
 * -errno with a message in err (inner then stays the caller's). */
int pfs_cache_new(struct pfs_store **out, struct pfs_store *inner, int root,
		  const struct pfs_cache_opts *o, char *err, size_t errlen);

/* Start the write-back worker: in the process that serves (a thread
 * does not survive the fork into the background). 0 or -errno. */
int pfs_cache_start(struct pfs_store *st);

/* Is st a cache store? */
bool pfs_cache_is(const struct pfs_store *st);

/* Wait until every change so far is durable on the mirror (prismfs sync).
 * 0 or the mirror's -errno. */
int pfs_cache_sync(struct pfs_store *st);

struct pfs_cache_stats {
	uint64_t pending_ops, pending_bytes, applied, failures;
	int last_err;
	char last_msg[512];
	unsigned long conflicts;
	char last_conflict[512];
	const char *mirror_kind;  /* "local", "webdav", "s3" */
	char guarantees[512];     /* what the mirror keeps, and how conflicts are found */
	uint64_t dirs_filled, files_loaded, bytes_loaded, hits;
	uint64_t used_bytes;      /* the cache filesystem's use */
	uint64_t evictions, bytes_evicted;
};
void pfs_cache_stats(struct pfs_store *st, struct pfs_cache_stats *out);

/* At unmount: write everything back (waiting at most timeout_ns for a
 * failing mirror, 0: no limit). If something cannot be written and
 * quarantine is not NULL, what is left is kept there (the data of each
 * file, and a list of the changes). 0, or -EIO with a one-line message
 * naming what is pending. The store stays usable for freeing only. */
int pfs_cache_finish(struct pfs_store *st, uint64_t timeout_ns, const char *quarantine,
		     char *msg, size_t msglen);

/* A new memory filesystem for a cache of size bytes, detached (no path
 * reaches it): its root, opened O_RDONLY | O_DIRECTORY. -errno and a
 * message when the kernel or the daemon's rights do not allow it. */
int pfs_memfs_open(uint64_t size, char *err, size_t errlen);
/* The same, named source in /proc/mounts, its mount kept in *mnt for the
 * caller to attach somewhere (--journal: at DIR/tree, to outlive the
 * daemon); mnt NULL: closed, the filesystem detached. */
int pfs_memfs_make(uint64_t size, const char *source, int *mnt, char *err, size_t errlen);

#endif
