/* inomap: (device, inode) -> where its first copy was made, so that later
 * names of a hard-linked inode become links to that copy. */
#ifndef PFS_INOMAP_H
#define PFS_INOMAP_H

#include <stddef.h>
#include <sys/types.h>

struct pfs_inomap_ent {
	dev_t dev;
	ino_t ino;
	char *path;  /* relative to the target root; NULL: empty slot */
	ino_t tino;  /* the copy's inode number */
};

struct pfs_inomap {
	struct pfs_inomap_ent *v;
	size_t n, cap;
};

/* The entry for (dev, ino), or NULL. */
const struct pfs_inomap_ent *pfs_inomap_get(const struct pfs_inomap *m, dev_t dev, ino_t ino);
/* Record (dev, ino) -> path (copied), tino. 0 or -ENOMEM. */
int pfs_inomap_put(struct pfs_inomap *m, dev_t dev, ino_t ino, const char *path, ino_t tino);
void pfs_inomap_free(struct pfs_inomap *m);

#endif
