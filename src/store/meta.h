/* meta: an object's metadata — owner, extended attributes, mode, times —
 * copied from one object to another. */
#ifndef PFS_META_H
#define PFS_META_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* An object: an open descriptor (fd >= 0, not O_PATH), or the entry name in
 * the directory dirfd, never followed if it is a symlink. */
struct pfs_ref {
	int fd;
	int dirfd;
	const char *name;
};

static inline struct pfs_ref pfs_ref_fd(int fd)
{
	return (struct pfs_ref){.fd = fd, .dirfd = -1, .name = NULL};
}

static inline struct pfs_ref pfs_ref_at(int dirfd, const char *name)
{
	return (struct pfs_ref){.fd = -1, .dirfd = dirfd, .name = name};
}

/* The overlayfs private attributes (trusted.overlay.*, user.overlay.*):
 * layer bookkeeping, never part of the content. */
bool pfs_meta_private_xattr(const char *name);

/* getxattr of r: the value's length, or -errno (-ENODATA: none). */
ssize_t pfs_meta_getxattr(struct pfs_ref r, const char *name, void *buf, size_t len);

/* Leave out the private attributes of src, and keep those of dst. */
#define PFS_META_NO_PRIVATE 1u
/* Do not set the times (the caller sets them later). */
#define PFS_META_NO_TIMES 2u

/* Make dst's owner, xattrs, mode and times those of src, whose lstat is
 * st. Afterwards dst has exactly src's xattrs (see PFS_META_NO_PRIVATE).
 * The order keeps each: owner first (chown clears set-id bits and file
 * capabilities), then xattrs (an ACL rewrites mode bits), then mode, then
 * times (everything else may move them). On failure *op names the step. */
int pfs_meta_copy(struct pfs_ref dst, struct pfs_ref src, const struct stat *st,
		  unsigned flags, const char **op);

/* Set dst's access and modification times (with nanoseconds) from st. */
int pfs_meta_times(struct pfs_ref dst, const struct stat *st);

#endif
