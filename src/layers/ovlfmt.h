/* ovlfmt: the kernel overlayfs on-disk format of an upper layer, read back
 * (Documentation/filesystems/overlayfs.rst is the specification).
 *
 * A name is whited out by a 0/0 character device, by a `.wh.NAME` entry
 * (OCI/AUFS layers), or by a zero-size regular file with the overlay.whiteout
 * xattr in a directory whose overlay.opaque is "x". A directory is opaque
 * when overlay.opaque is "y" or it holds `.wh..wh..opq`. Every overlay xattr
 * exists under trusted. (the kernel's default) and user. (userxattr). */
#ifndef PFS_OVLFMT_H
#define PFS_OVLFMT_H

#include "store/walk.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "store/meta.h"

#define PFS_OVL_WH_PREFIX ".wh."
#define PFS_OVL_OPAQUE_MARKER ".wh..wh..opq"
/* prismfs's own: overlay.<this> on an upper's root says a mapping table
 * shaped the view it was written through, so its paths are virtual ones
 * and it cannot be committed to the lower's real paths. */
#define PFS_OVL_MAPPED "prismfs.mapped"
/* prismfs's own: overlay.<this> on an upper's root names the lowers that
 * were below SOURCE when it was last mounted (canonical paths, each ended
 * by a NUL; "?" when they did not fit), so that an offline commit knows it
 * must keep hidden what the upper hid from them. Absent: none (or an upper
 * prismfs never mounted). */
#define PFS_OVL_LOWERS "prismfs.lowers"

/* A 0/0 character device: overlayfs's whiteout. */
bool pfs_ovl_is_whiteout(const struct stat *st);
/* A `.wh.NAME` entry beside name in dirfd (the OCI/AUFS whiteout)? */
bool pfs_ovl_has_wh_file(struct pfs_store *s, int dirfd, const char *name);

/* Read overlay.<key> of r, trusted. first, then user.; NUL-terminated in
 * buf. The length, or -errno (-ENODATA: neither is set). */
ssize_t pfs_ovl_get(struct pfs_store *s, struct pfs_ref r, const char *key, char *buf, size_t len);

/* Is overlay.<key> set on r (whatever its value)? 1, 0, or -errno. */
int pfs_ovl_has(struct pfs_store *s, struct pfs_ref r, const char *key);

/* This entry hides the lower one of the same name (and is hidden itself). */
#define PFS_OVL_WHITEOUT 1u
/* A real entry that also has a `.wh.NAME`: the lower NAME is gone and this
 * one replaces it without merging (as an opaque directory). */
#define PFS_OVL_FRESH 2u

struct pfs_ovl_ent {
	const char *name;
	unsigned char type; /* DT_* of the real entry (DT_UNKNOWN possible) */
	unsigned flags;
};

/* An upper directory's entries with the markers applied: marker entries
 * themselves are not listed; sorted by name. */
struct pfs_ovl_dir {
	struct pfs_ovl_ent *v;
	size_t n;
	bool opaque;
	struct pfs_names raw;
};

int pfs_ovl_read_dir(struct pfs_store *s, int dirfd, struct pfs_ovl_dir *d);
const struct pfs_ovl_ent *pfs_ovl_find(const struct pfs_ovl_dir *d, const char *name);
void pfs_ovl_dir_free(struct pfs_ovl_dir *d);

#endif
