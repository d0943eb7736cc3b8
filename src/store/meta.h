/* meta: an object's metadata — owner, extended attributes, mode, times —
 * copied from one object to another, through a store (store/store.h). */
#ifndef PFS_META_H
#define PFS_META_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "store/store.h"

/* The overlayfs private attributes (trusted.overlay.*, user.overlay.*):
 * layer bookkeeping, never part of the content. */
bool pfs_meta_private_xattr(const char *name);

/* getxattr of r: the value's length, or -errno (-ENODATA: none). */
ssize_t pfs_meta_getxattr(struct pfs_store *s, struct pfs_ref r, const char *name, void *buf, size_t len);

/* Leave out the private attributes of src, and keep those of dst. */
#define PFS_META_NO_PRIVATE 1u
/* Do not set the times (the caller sets them later). */
#define PFS_META_NO_TIMES 2u

/* Make dst's owner, xattrs, mode and times those of src, whose lstat is
 * st. Afterwards dst has exactly src's xattrs (see PFS_META_NO_PRIVATE).
 * The order keeps each: owner first (chown clears set-id bits and file
 * capabilities), then xattrs (an ACL rewrites mode bits), then mode, then
 * times (everything else may move them). On failure *op names the step. */
int pfs_meta_copy(struct pfs_store *s, struct pfs_ref dst, struct pfs_ref src, const struct stat *st,
		  unsigned flags, const char **op);

/* Set dst's access and modification times (with nanoseconds) from st. */
int pfs_meta_times(struct pfs_store *s, struct pfs_ref dst, const struct stat *st);

#endif
