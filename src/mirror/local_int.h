/* local_int: what local.c (open, reads, the base table) and local_apply.c
 * (the write-back ops) share. */
#ifndef PFS_MIRROR_LOCAL_INT_H
#define PFS_MIRROR_LOCAL_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "mirror/basetab.h"
#include "mirror/local.h"

struct base_ent {
	struct pfs_basetab_ent h; /* h.conflict: where the cache's version goes */
	struct pfs_wb_base base;
};

struct pfs_mirror_local {
	struct pfs_mirror base;
	char *path; /* as given, for describe */
	struct pfs_store *st;
	int root;
	pthread_mutex_t lock; /* the table and conflicts */
	struct pfs_basetab bt;
	unsigned long conflicts;
	char last_conflict[PATH_MAX + 128];
	unsigned long tmpseq; /* the worker's alone */
	unsigned long spillseq; /* tmpfile names where O_TMPFILE fails (atomic) */
};

#define L(m) ((struct pfs_mirror_local *)(m))

/* In local.c. */
int pfs_local_parent_of(struct pfs_mirror_local *m, const char *path, char *buf, size_t len,
			int *dirfd, const char **name);
void pfs_local_put_parent(struct pfs_mirror_local *m, int dirfd);
void pfs_local_to_base(const struct stat *st, struct pfs_wb_base *b);
void pfs_local_set_base(struct pfs_mirror_local *m, uint64_t key, const struct stat *st);

/* In local_conflict.c (what each does is written beside it there). */
bool pfs_local_same_base(const struct pfs_wb_base *b, const struct stat *st);
void pfs_local_refresh_base(struct pfs_mirror_local *m, uint64_t key, int dfd, const char *name,
			    const struct stat *before);
__attribute__((format(printf, 2, 3))) void pfs_local_note(struct pfs_mirror_local *m,
							  const char *fmt, ...);
int pfs_local_view_file(struct pfs_mirror_local *m, uint64_t key, const struct pfs_wb_base *listed,
			int dfd, const char *name, char **aside, bool *changed);
void pfs_local_settle(struct pfs_mirror_local *m, uint64_t key, int dfd, const char *name);
int pfs_local_aside(struct pfs_mirror_local *m, int dfd, const char *name, const char *path);
int pfs_local_replaced(struct pfs_mirror_local *m, const struct pfs_wb_op *op, int dfd,
		       const char *name);

/* In local_apply.c: the ops table's apply and apply_new (mirror.h). */
int pfs_local_apply(void *arg, struct pfs_wb_op *op, char *err, size_t errlen);
int pfs_local_apply_new(void *arg, struct pfs_wb_op *const *ops, unsigned n, char *err,
			size_t errlen);

#endif
