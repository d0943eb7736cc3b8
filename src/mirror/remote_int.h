/* remote_int: what remote.c (open, loads, the base table) and
 * remote_apply.c (the write-back ops, conflicts) share. Lock order and the
 * conflict rules: remote.c's top. */
#ifndef PFS_MIRROR_REMOTE_INT_H
#define PFS_MIRROR_REMOTE_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "mirror/basetab.h"
#include "mirror/mirror.h"
#include "mirror/remote.h"

/* What the server held for a cache file when it was last loaded or
 * written: its etag, and size and mtime for servers that give no etag. */
struct rbase {
	bool present;     /* false: the mirror had no such file */
	char etag[128];
	uint64_t size;
	int64_t mtime;
};

struct base_ent {
	struct pfs_basetab_ent h; /* h.conflict: where its write-backs go */
	struct rbase b;
};

struct pfs_mirror_remote {
	struct pfs_mirror base;
	struct pfs_remote *wb;   /* the worker's */
	struct pfs_remote *ld;   /* loads', under load_lock */
	pthread_mutex_t load_lock;
	pthread_mutex_t lock;    /* tab, conflicts */
	struct pfs_basetab bt;
	unsigned long conflicts;
	char last_conflict[PATH_MAX + 128];
	char url[512];
	bool skipped_warned;
};

#define R(m) ((struct pfs_mirror_remote *)(m))

/* In remote.c. */
void pfs_remote_base_of(const struct pfs_rstat *rs, struct rbase *b);
int pfs_remote_set_base(struct pfs_mirror_remote *m, uint64_t key, const struct pfs_rstat *rs);

/* In remote_apply.c: the ops table's apply (mirror.h). */
int pfs_remote_apply(void *arg, struct pfs_wb_op *op, char *err, size_t errlen);

#endif
