/* cache_int: what the parts of the cache store share (cache.c: the
 * operations; cache_load.c: filling directories and loading files from the
 * mirror; cache_life.c: making, starting, syncing and finishing a cache). */
#ifndef PFS_CACHE_INT_H
#define PFS_CACHE_INT_H

#include "cache/cache.h"
#include "cache/mirror_local.h"
#include "cache/wbq.h"

#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>

#define NBUCKETS 4096u

enum { FILLED = 1, STUB = 2 };

/* What the cache knows of one of its inodes beyond what the tmpfs says. */
struct ent {
	struct ent *next;
	ino_t ino;
	unsigned state;
};

/* A file opened for writing, to queue its data when it is released. */
struct wfd {
	struct wfd *next;
	int fd;
	ino_t ino;
	struct timespec mtime;
	off_t size;
	bool dirty;
};

struct pfs_cache {
	struct pfs_store base;
	struct pfs_store *in;
	int root;
	dev_t dev;                  /* the cache filesystem's */
	char rootpath[PATH_MAX];    /* what /proc shows for root ("/" when detached) */
	size_t rootlen;
	struct pfs_mirror_local *mirror;
	struct pfs_wbq *q;          /* NULL until pfs_cache_start */
	struct pfs_wbq_opts qo;
	pthread_mutex_t load_lock;  /* one fill or load at a time */
	pthread_mutex_t lock;       /* the tables and counters */
	struct ent *tab[NBUCKETS];
	struct wfd *wtab[NBUCKETS];
	uint64_t dirs_filled, files_loaded, bytes_loaded, hits;
	struct pfs_cache_links *links; /* cache_links.c; under load_lock */
};

#define C(st) ((struct pfs_cache *)(st))

extern const struct pfs_store_ops pfs_cache_ops;

/* The state of a cache inode (FILLED, STUB bits); set and clear bits. */
unsigned pfs_cache_state(struct pfs_cache *c, ino_t ino);
void pfs_cache_state_set(struct pfs_cache *c, ino_t ino, unsigned set, unsigned clear);
unsigned pfs_cache_bucket(uint64_t k);
/* fd's path (and name in it) relative to the cache root, as the mirror
 * knows it. 0 or -errno (-EXDEV: not in the cache). */
int pfs_cache_path(struct pfs_cache *c, int fd, const char *name, char *buf, size_t len);
/* A live name (relative to the cache root) of the file fd, whose own
 * name was unlinked while it has others (cache_find.c). 0 or -ENOENT. */
int pfs_cache_find_live(struct pfs_cache *c, int fd, char *buf, size_t len);
/* Open a mirror path beneath its root, through no symlink. */
int pfs_cache_mirror_open(struct pfs_cache *c, const char *path, int flags);
/* Fill the directory dirfd from the mirror the first time; the same when a
 * name in it is about to be used. */
int pfs_cache_fill(struct pfs_cache *c, int dirfd);
int pfs_cache_fill_for(struct pfs_cache *c, int dirfd, const char *name);
/* Load the data of the stub file fd (st: its fstat). */
int pfs_cache_load(struct pfs_cache *c, int fd, const struct stat *st);
void pfs_cache_destroy(struct pfs_store *st);
/* Filling name in dirfd for the mirror file mst: 1 if it was made a hard
 * link to the cache object of another of its names, 0 if it is to be made
 * (and then noted with pfs_cache_link_note), or -errno. */
int pfs_cache_link_fill(struct pfs_cache *c, int dirfd, const char *name,
			const struct stat *mst);
void pfs_cache_link_note(struct pfs_cache *c, int dirfd, const char *name,
			 const struct stat *mst);
void pfs_cache_links_free(struct pfs_cache *c);

#endif
