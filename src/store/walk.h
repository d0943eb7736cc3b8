/* walk: what a tree walk needs to go arbitrarily deep without recursion and
 * without one open descriptor per level.
 *
 * - pfs_names: one directory's entries, read whole and sorted, so a level
 *   can be left for a child and resumed later without holding a stream.
 * - pfs_dstack: the directories from a root to the current one. Only the
 *   deepest PFS_DSTACK_WINDOW levels keep their descriptor; an older one is
 *   closed when the level below it can lead back to it, and reopened through
 *   ".." (checked by device and inode) on the way back up.
 * - pfs_pathbuf: the current relative path, for messages and link targets. */
#ifndef PFS_WALK_H
#define PFS_WALK_H

#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct pfs_name {
	const char *name;
	unsigned char type; /* DT_*; DT_UNKNOWN when the filesystem does not say */
};

struct pfs_names {
	struct pfs_name *v;
	size_t n;
	char *pool;
};

/* Read every entry of the directory dirfd (except . and ..), sorted by name.
 * dirfd itself is left as it was. 0 or -errno. */
int pfs_names_read(int dirfd, struct pfs_names *out);
/* The entry called name, or NULL. */
const struct pfs_name *pfs_names_find(const struct pfs_names *n, const char *name);
void pfs_names_free(struct pfs_names *n);

#define PFS_DSTACK_WINDOW 32
#define PFS_DSTACK_ABSENT (-1)

struct pfs_dslevel {
	int fd;        /* PFS_DSTACK_ABSENT: no directory at this level */
	bool closed;   /* present but closed; reopened from the level below */
	bool child;    /* a child of the level above (reachable by "..") */
	dev_t dev;
	ino_t ino;
};

struct pfs_dstack {
	struct pfs_dslevel *lv;
	size_t n, cap;
};

/* Push fd (owned from now on, even on failure; PFS_DSTACK_ABSENT for none).
 * child: fd is an entry of the directory on top, so ".." leads back. */
int pfs_dstack_push(struct pfs_dstack *s, int fd, bool child);
/* Room for element n of the array *arrp (elements of size sz, *cap of
 * them): doubles it when full. 0 or -ENOMEM (the array is left as it was). */
int pfs_grow(void *arrp, size_t *cap, size_t n, size_t sz);
/* The descriptor of the top level (PFS_DSTACK_ABSENT if none). */
int pfs_dstack_top(const struct pfs_dstack *s);
/* Close the top level and make sure the new top is open again. 0, or
 * -ESTALE when the directory found through ".." is not the one left. */
int pfs_dstack_pop(struct pfs_dstack *s);
void pfs_dstack_free(struct pfs_dstack *s);

/* Open the directory name in dirfd without following a symlink and without
 * entering another mount (-EXDEV). 0 and *fd, or -errno. */
int pfs_open_subdir(struct pfs_store *s, int dirfd, const char *name, int *fd);

struct pfs_pathbuf {
	char *s;
	size_t len, cap;
};

/* Append "/name" (or "name" when empty); returns the old length to restore
 * with pfs_pathbuf_cut, or (size_t)-1 when out of memory. */
size_t pfs_pathbuf_push(struct pfs_pathbuf *p, const char *name);
void pfs_pathbuf_cut(struct pfs_pathbuf *p, size_t len);
/* The path, "." for the root. */
const char *pfs_pathbuf_str(const struct pfs_pathbuf *p);
void pfs_pathbuf_free(struct pfs_pathbuf *p);

#endif
