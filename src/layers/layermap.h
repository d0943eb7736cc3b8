/* layermap: the mapping table in a layered mount. The table shapes the
 * lower view: what SOURCE (layer 1) shows at a virtual path is what the
 * table puts there (targets, grafts, synthetic directories), and a hidden
 * path hides every lower layer. The upper and the layers below SOURCE are
 * always taken at the virtual path, so a change copies up to the upper at
 * the path the view shows, and an upper entry wins over anything below. */
#ifndef PFS_LAYERMAP_H
#define PFS_LAYERMAP_H

#include <stdbool.h>
#include <sys/stat.h>

#include "layers/layer.h"
#include "view/view.h"

/* Where SOURCE has a name of a merged directory. */
struct pfs_lsrc {
	struct pfs_place pl;  /* pl.dirfd, pl.name: the name in SOURCE (dirfd
			       * -1: SOURCE has nothing there) */
	bool use;             /* the directory merges SOURCE at all */
	bool hidden;          /* the table hides the name: no lower layer shows it */
	bool syn_ok;          /* nothing in SOURCE there makes it a synthetic
			       * directory (the table has names below it) */
};
/* d has a table (d->map). 0 or -errno; pfs_lmap_source_put either way. */
int pfs_lmap_source(struct pfs_fs *fs, const struct pfs_ldir *d, const char *name,
		    struct pfs_lsrc *s);
void pfs_lmap_source_put(struct pfs_lsrc *s);

/* The attributes of a synthetic directory with inode number ino. */
void pfs_lmap_syn_attr(struct pfs_fs *fs, ino_t ino, struct stat *st);

/* The names the table decides in directory d (keys directly in it, and
 * the first names of deeper keys), sorted; hidden: d itself is hidden, so
 * no lower layer shows anything in it. */
struct pfs_lclaims {
	char **v;
	size_t n, cap;
	bool hidden;
};
int pfs_lmap_claims(const struct pfs_ldir *d, struct pfs_lclaims *c);
bool pfs_lmap_claimed(const struct pfs_lclaims *c, const char *name);
void pfs_lmap_claims_free(struct pfs_lclaims *c);

/* May (parent, name) change: -EROFS where the table says readonly, else 0. */
int pfs_lmap_may_change(struct pfs_fs *fs, struct pfs_node *parent, const char *name);

/* For a new table: the node the kernel holds for (parent, name), held (or
 * NULL), and whether SOURCE has a real object there (if not, the name may
 * have become or stopped being a synthetic directory). */
struct pfs_node *pfs_lmap_held_child(struct pfs_fs *fs, struct pfs_node *parent,
				     const char *name, bool *exists);

#endif
