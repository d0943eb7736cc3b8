/* rmtree: remove directory trees of any depth — no recursion and a bounded
 * number of open descriptors (see walk.h), never following a symlink and
 * never entering another mount. */
#ifndef PFS_RMTREE_H
#define PFS_RMTREE_H

#include <stddef.h>

#include "store/store.h"

/* Remove everything inside the directory dirfd (dirfd itself stays).
 * 0 or -errno; on failure `where` (may be NULL) receives the path, relative
 * to dirfd, of the entry that could not be removed (-EXDEV: a mount point). */
int pfs_rmtree_contents(struct pfs_store *s, int dirfd, char *where, size_t wlen);
/* The same, calling each(arg) after every entry removed. */
int pfs_rmtree_contents_each(struct pfs_store *s, int dirfd, char *where, size_t wlen, void (*each)(void *),
			     void *arg);

/* Remove name in dirfd, whatever it is; a missing name is not an error.
 * `where` as above, relative to dirfd (so it starts with name). */
int pfs_rmtree_at(struct pfs_store *s, int dirfd, const char *name, char *where, size_t wlen);

#endif
