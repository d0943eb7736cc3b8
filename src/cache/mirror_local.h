/* mirror_local: a local directory as the mirror of a memory cache — how
 * the write-back queue's ops (cache/wbq.h) are applied to it.
 *
 * Every op is idempotent, so a journal replayed after a crash may apply an
 * op a second time: a mkdir that finds its directory, an unlink that finds
 * nothing, a rename whose source is gone and whose target is there, all
 * count as done. Paths are resolved beneath the mirror's root and never
 * through a symlink (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): a
 * symlink planted in the mirror cannot send a write-back elsewhere.
 *
 * A file's data is written to a temporary file beside it and renamed over
 * it, so the mirror never holds half a file; a file with several names
 * (hard links) is rewritten in place instead, so its other names keep
 * seeing it. Before replacing a file, the mirror's copy is compared with
 * what the cache loaded (its base: inode, size, mtime): if it changed
 * behind the mount, the cache's version is written beside it as
 * NAME.prismfs-conflict-YYYYMMDDTHHMMSSZ and the mirror's change is kept.
 * Later write-backs of that file go to the same conflict name.
 *
 * Durability: pfs_mirror_local_flush makes everything applied so far
 * durable (syncfs on the mirror's filesystem); the queue calls it before
 * an fsync or sync returns.
 *
 * Lock order: m->lock (the base table) only; never held across a call of
 * the store. */
#ifndef PFS_MIRROR_LOCAL_H
#define PFS_MIRROR_LOCAL_H

#include "cache/wbq.h"
#include "store/store.h"

#include <pthread.h>

struct pfs_mirror_local;

/* Open the mirror directory path through store st. 0, or -errno and a
 * one-line message in err. */
int pfs_mirror_local_open(struct pfs_mirror_local **out, struct pfs_store *st, const char *path,
			  char *err, size_t errlen);
void pfs_mirror_local_close(struct pfs_mirror_local *m);

/* The mirror's root directory (a descriptor owned by m), to load from. */
int pfs_mirror_local_root(struct pfs_mirror_local *m);

/* Remember what the mirror's path holds now as the base of the cache
 * inode key (the cache just loaded it). 0 or -errno. */
int pfs_mirror_local_remember(struct pfs_mirror_local *m, uint64_t key, const char *path);
/* Forget key (the cache file is gone for good). */
void pfs_mirror_local_forget(struct pfs_mirror_local *m, uint64_t key);

/* Conflicts met so far, and the last one's report (buf may be NULL). */
unsigned long pfs_mirror_local_conflicts(struct pfs_mirror_local *m, char *buf, size_t len);

/* pfs_wb_apply_fn and pfs_wb_flush_fn, arg = m. */
int pfs_mirror_local_apply(void *m, struct pfs_wb_op *op, char *err, size_t errlen);
int pfs_mirror_local_flush(void *m, char *err, size_t errlen);

#endif
