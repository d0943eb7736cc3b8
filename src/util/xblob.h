/* xblob: a set of extended attributes as one blob, the form the history
 * keeps with a saved version (versions.xattrs) and a restore puts back:
 * for each attribute its name, a NUL, its value's length (4 bytes, host
 * order: the blob never leaves this machine's history DIR), its value.
 * Which ones: pfs_xblob_kept's. The names carry their namespace, so the
 * form did not change when more namespaces were kept: a blob written when
 * only user.* ones were holds only those and reads as before (that
 * version shows no ACL). The daemon reads through its store, the CLI by
 * path: each gives its own list and get, the blob is made here once. */
#ifndef PFS_XBLOB_H
#define PFS_XBLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Whether the history keeps (and .history shows, and a restore puts back)
 * the attribute name: user.*, the POSIX ACLs (system.posix_acl_access,
 * system.posix_acl_default), security.* and trusted.* (those two as far as
 * the reader may see them: trusted.* needs CAP_SYS_ADMIN). Not the
 * overlay's own, trusted.overlay.* and user.overlay.*: they are layer
 * metadata (opaque, whiteout, origin, redirect, metacopy) tied to one
 * inode and to the layers it sits in; on a restored copy (a new inode)
 * they would lie to the overlay that reads them (an origin or index
 * that no longer matches, a metacopy whose data is not below). */
bool pfs_xblob_kept(const char *name);

/* listxattr(2) and getxattr(2) of one object, as the caller reaches it:
 * a length, or -errno. */
struct pfs_xblob_src {
	ssize_t (*list)(void *arg, char *buf, size_t len);
	ssize_t (*get)(void *arg, const char *name, void *buf, size_t len);
	void *arg;
};

/* The object's kept attributes as a blob (*blob malloc'd, NULL and *len
 * 0 when it has none, or no xattrs at all: -ENOTSUP is none). 0 or -errno
 * (-ERANGE: one grew while being read, a change not ours). */
int pfs_xblob_read(const struct pfs_xblob_src *src, char **blob, size_t *len);

/* One entry after k (NULL: the first): its name, value and length (of
 * any name the blob holds: one written before may hold names no longer
 * kept). 1, 0 at the end, or -EINVAL for a torn blob (never written so). */
int pfs_xblob_next(const char *blob, size_t len, const char **k, const char **val,
		   size_t *vlen);

#endif
