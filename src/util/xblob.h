/* xblob: a set of user.* extended attributes as one blob, the form the
 * history keeps with a saved version (versions.xattrs) and a restore puts
 * back: for each attribute its name, a NUL, its value's length (4 bytes,
 * host order: the blob never leaves this machine's history DIR), its
 * value. Only user.*: the others (security.*, system.posix_acl_*,
 * trusted.*) are the system's, which .history does not show. The daemon
 * reads through its store, the CLI by path: each gives its own list and
 * get, the blob is made here once. */
#ifndef PFS_XBLOB_H
#define PFS_XBLOB_H

#include <stddef.h>
#include <sys/types.h>

/* listxattr(2) and getxattr(2) of one object, as the caller reaches it:
 * a length, or -errno. */
struct pfs_xblob_src {
	ssize_t (*list)(void *arg, char *buf, size_t len);
	ssize_t (*get)(void *arg, const char *name, void *buf, size_t len);
	void *arg;
};

/* The object's user.* attributes as a blob (*blob malloc'd, NULL and *len
 * 0 when it has none, or no xattrs at all: -ENOTSUP is none). 0 or -errno
 * (-ERANGE: one grew while being read, a change not ours). */
int pfs_xblob_read(const struct pfs_xblob_src *src, char **blob, size_t *len);

/* One entry after k (NULL: the first): its name, value and length.
 * 1, 0 at the end, or -EINVAL for a torn blob (never written so). */
int pfs_xblob_next(const char *blob, size_t len, const char **k, const char **val,
		   size_t *vlen);

#endif
