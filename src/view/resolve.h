/* resolve.h: what resolve.c shares with attr.c and mapload.c (inside the
 * view only; view.h has the rest). */
#ifndef PFS_RESOLVE_H
#define PFS_RESOLVE_H

#include "view/view.h"

/* The directory an entry's target names (a graft's root), owned, or -errno. */
int pfs_target_open_dir(struct pfs_fs *fs, const struct pfs_map_entry *e);
/* Must the kernel not cache the mapped name of e in parent (virtual path
 * of the name: vpath)? See pfs_place_near_target. */
bool pfs_target_entry_near(struct pfs_fs *fs, const struct pfs_map *m, struct pfs_node *parent,
			   const struct pfs_map_entry *e, const char *vpath);

#endif
