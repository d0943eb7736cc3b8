/* history_restore_int: restore of trees (history_restore_tree.c), called
 * by prismfs restore (history_restore.c). */
#ifndef PFS_HISTORY_RESTORE_INT_H
#define PFS_HISTORY_RESTORE_INT_H

#include <stdbool.h>
#include <stddef.h>

/* Put rel (relative to the mount canon_m, not "") back as it is under
 * bsnap (MNT/.history/SNAP), whatever it is: built beside it, exchanged
 * with it in one rename, the old removed; removed if bsnap has no rel.
 * over: rel is a file and was one: the copy is renamed over it (a mapped
 * name may be replaced but not exchanged away). 0, or 1 after saying why. */
int pfs_hr_restore_path(const char *canon_m, const char *bsnap, const char *snap,
			const char *rel, bool over);
/* Every top-level entry of the mount (but past_name), one at a time. */
int pfs_hr_restore_all(const char *canon_m, const char *bsnap, const char *snap,
		       const char *past_name);
/* one(arg, DIR/NAME) for each NAME of dir (relative to canon_m, "" its
 * root) then or now, but skip and temporaries (swept first). ORed. */
int pfs_hr_restore_in(const char *canon_m, const char *bsnap, const char *dir,
		      const char *skip, int (*one)(void *arg, const char *rel), void *arg);
/* Remove the temporaries in dir left by a restore that was killed. */
void pfs_hr_sweep(const char *dir);
bool pfs_hr_is_tmp(const char *name);
/* The xattrs the history keeps (util/xblob.h: user.*, ACLs, security.*,
 * trusted.*) of path (not followed) as one blob, the history's format
 * (name, NUL, 4-byte host-order length, value): *blob NULL and *len 0 if
 * none. 0 or -1 with errno. */
int pfs_hr_xattrs_read(const char *path, char **blob, size_t *len);
/* Set the user.* ones of such a blob on fd (a fresh copy, before its
 * owner and mode): 0 or -1 with errno. */
int pfs_hr_xattrs_put(int fd, const char *blob, size_t len);
/* Then, after its owner and before its mode: the copy at path gets the
 * blob's other ones and loses every kept one the blob has not (what its
 * making gave it: a default ACL's), so that it has the snapshot's set,
 * exactly. security.* and trusted.* ones the restorer may not set are left
 * (EPERM, as the owner). 0 or -1 with errno. */
int pfs_hr_xattrs_fix(const char *path, const char *blob, size_t len);

#endif
