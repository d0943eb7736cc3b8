/* basetab: what a mirror remembers of each cache file it loaded or wrote
 * (by key, the cache inode) — its base, which the implementation defines,
 * and the conflict name its write-backs go to once the mirror's copy
 * changed behind the mount. One hash table both mirrors use; the caller
 * holds its own lock around every call. */
#ifndef PFS_BASETAB_H
#define PFS_BASETAB_H

#include <stddef.h>
#include <stdint.h>

struct pfs_basetab_ent {
	struct pfs_basetab_ent *next;
	uint64_t key;
	char *conflict; /* where this file's write-backs go, or NULL */
};

#define PFS_BASETAB_BUCKETS 4096u

struct pfs_basetab {
	struct pfs_basetab_ent *tab[PFS_BASETAB_BUCKETS];
};

/* An implementation's entry begins with a struct pfs_basetab_ent. */
void *pfs_basetab_get(struct pfs_basetab *t, uint64_t key);
/* The entry of key, made zeroed (size bytes) if missing; NULL: no memory. */
void *pfs_basetab_make(struct pfs_basetab *t, uint64_t key, size_t size);
void pfs_basetab_forget(struct pfs_basetab *t, uint64_t key);
void pfs_basetab_clear(struct pfs_basetab *t);

/* The name the cache's version of path goes to when the mirror changed
 * it: PATH.prismfs-conflict-YYYYMMDDTHHMMSSZ (UTC). NULL: no memory. */
char *pfs_mirror_conflict_name(const char *path);

#endif
