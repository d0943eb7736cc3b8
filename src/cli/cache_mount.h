/* cache_mount: the daemon's part of a cached mount (--mirror). */
#ifndef PFS_CACHE_MOUNT_H
#define PFS_CACHE_MOUNT_H

#include <stddef.h>

#include "cache/cache.h"
#include "cli/cli.h"
#include "view/view.h"

/* Make the memory cache SOURCE's stand-in: fs->root_fd its root, fs->store
 * the cache store in front of the store fs had, fs->source the mirror's
 * canonical path. 0, or -1 after saying why. */
int pfs_cache_mount_open(const struct pfs_config *cfg, struct pfs_fs *fs);
/* After the session: write everything back; what cannot be is kept in a
 * quarantine directory under /var/tmp, named in msg. 0 or -errno. */
int pfs_cache_mount_finish(struct pfs_fs *fs, char *msg, size_t len);

/* --history DIR (history/history.h, the code in history_cmd.c): the
 * history store in front of fs->store, on a plain mount. 0 (nothing to do
 * without --history), or -1 after saying why. */
int pfs_history_mount_open(const struct pfs_config *cfg, struct pfs_fs *fs);
/* In the process that serves: start what the stores in front of SOURCE
 * run (the cache's write-back, the history's database). 0 or -errno. */
int pfs_stores_start(struct pfs_fs *fs);

#endif
