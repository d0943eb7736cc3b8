/* maphist: the mapping table as a mount's history sees it (docs/HISTORY.md,
 * "With a mapping table"). The history records SOURCE's changes by their
 * path in SOURCE; the table of each moment is kept with the journal (its
 * text, pfs_map_dump), and these translate between a path of the view and
 * the path in SOURCE through one table. Pure, no I/O: targets are taken as
 * written ("." and ".." lexically), not through symlinks. */
#ifndef PFS_MAPHIST_H
#define PFS_MAPHIST_H

#include "map/mapping.h"

/* The table as JSON (the format --map reads; "{}" for NULL), malloc'ed;
 * NULL on ENOMEM. */
char *pfs_map_dump(const struct pfs_map *m);

/* The path in SOURCE the view path vpath ("/" or "/a/b") shows through m:
 * 1 with out relative to SOURCE ("" its root), 0 with out absolute (a
 * target outside SOURCE), -ENOENT (hidden by m, or a target that leads out
 * of SOURCE), -ENAMETOOLONG. An absolute target under source or under mnt
 * (which means the source there) is inside SOURCE. *virt (may be NULL):
 * keys lie beneath vpath (where its target, or SOURCE, has nothing, the
 * view shows a synthetic directory). */
int pfs_map_to_source(const struct pfs_map *m, const char *vpath, const char *source,
		      const char *mnt, char *out, size_t len, bool *virt);

/* The view path ("/a/b") that shows spath (relative to SOURCE, or absolute
 * outside it) through m: under the key whose target holds it most nearly
 * (the deepest target; the first key of those), else its own path when no
 * key covers or hides that. 1 with out set, 0 if m shows it nowhere (out
 * is spath then), -ENAMETOOLONG. */
int pfs_map_to_view(const struct pfs_map *m, const char *spath, const char *source,
		    const char *mnt, char *out, size_t len);

#endif
