/* cache_int: what the parts of the cache store share (cache.c: the
 * operations; cache_load.c: filling directories and loading files from the
 * mirror; cache_life.c: making, starting, syncing and finishing a cache). */
#ifndef PFS_CACHE_INT_H
#define PFS_CACHE_INT_H

#include "cache/cache.h"
#include "cache/evict.h"
#include "cache/journal.h"
#include "cache/wbq.h"
#include "mirror/mirror.h"

#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>

#define NBUCKETS 4096u

/* SPILLED: a stub whose data waits for its write-back from a file on the
 * mirror's filesystem (cache_spill.c): not to be loaded before it is done. */
/* LISTED: a file whose mirror listing is remembered (lsize, lmtim), to
 * tell a change on the mirror at the next listing (cache_refresh.c). */
enum { FILLED = 1, STUB = 2, SPILLED = 4, LISTED = 8 };

/* What the cache knows of one of its inodes beyond what the tmpfs says. */
struct ent {
	struct ent *next;
	ino_t ino;
	unsigned state;
	unsigned gen;            /* a directory: c->list_gen when it was listed */
	uint64_t listed_ns;      /* ... and when (CLOCK_MONOTONIC) */
	off_t lsize;             /* a file: its size and mtime in the mirror's */
	struct timespec lmtim;   /* last listing, and the cache object's ctime */
	struct timespec lctim;   /* when that was noted (a later one: changed here) */
};

/* A file opened for writing, to queue its data when it is released. */
struct wfd {
	struct wfd *next;
	int fd;
	ino_t ino;
	struct timespec mtime;
	off_t size;
	bool dirty;
	int spill;      /* spilled: the file on the mirror's filesystem that
			 * holds the data now (fd was made to open it too), or -1 */
	int cfd;        /* spilled: the cache file (a stub of the right size) */
	off_t stub_size;
	bool nospill;   /* a move out of memory failed: only at ENOSPC again */
};

/* A file opened only for reading, of the cache's filesystem: a writer
 * moving the file out of memory points it at the spill file too
 * (cache_spill.c: every descriptor of a file sees the same data). */
struct rfd {
	struct rfd *next;
	int fd;
	ino_t ino;
};

struct pfs_cache {
	struct pfs_store base;
	struct pfs_store *in;
	int root;
	dev_t dev;                  /* the cache filesystem's */
	char rootpath[PATH_MAX];    /* what /proc shows for root ("/" when detached) */
	size_t rootlen;
	struct pfs_mirror *mirror;    /* its only way there (mirror/mirror.h) */
	struct pfs_wbq *q;          /* NULL until pfs_cache_start */
	struct pfs_wbq_opts qo;
	struct pfs_journal *j;      /* --journal, or NULL */
	pthread_mutex_t load_lock;  /* one fill or load at a time */
	pthread_mutex_t lock;       /* the tables and counters */
	pthread_cond_t spill_cv;    /* a last spilled writer's release made its
				     * file STUB | SPILLED (cache_spill.c) */
	struct ent *tab[NBUCKETS];
	struct wfd *wtab[NBUCKETS];
	struct rfd *rtab[NBUCKETS];  /* readers, by fd (under lock) */
	uint64_t dirs_filled, files_loaded, bytes_loaded, hits;
	struct pfs_evict *ev;        /* keeps the use within the size (evict.h) */
	uint64_t spill_at;           /* a file larger leaves memory; 0: never */
	unsigned spilled;            /* open files spilled now (atomic) */
	struct pfs_cache_links *links; /* cache_links.c; under load_lock */
	uint64_t ttl_ns;             /* a listing's life (--mirror-ttl); 0: for ever */
	unsigned list_gen;           /* bumped by sync: every listing is old (atomic) */
};

#define C(st) ((struct pfs_cache *)(st))

extern const struct pfs_store_ops pfs_cache_ops;

/* The state of a cache inode (FILLED, STUB bits); set and clear bits. */
unsigned pfs_cache_state(struct pfs_cache *c, ino_t ino);
void pfs_cache_state_set(struct pfs_cache *c, ino_t ino, unsigned set, unsigned clear);
/* cache_refresh.c: is the filled directory ino's listing past its life? */
bool pfs_cache_dir_stale(struct pfs_cache *c, ino_t ino);
/* The directory ino was listed now. */
void pfs_cache_dir_listed(struct pfs_cache *c, ino_t ino);
/* What the mirror's listing said of the cache file (dirfd, name) (mst),
 * noted with the file's ctime now. */
void pfs_cache_file_listed(struct pfs_cache *c, int dirfd, const char *name,
			   const struct stat *mst);
/* The file fd was loaded: its data is the mirror's as last listed. */
void pfs_cache_file_loaded(struct pfs_cache *c, int fd);
/* List the filled directory dirfd (st: its fstat) again and bring it in
 * step with the mirror, under c->load_lock. 0 or -errno. */
int pfs_cache_refresh(struct pfs_cache *c, int dirfd, const struct stat *st);
/* Make name in dirfd (the cache) what the mirror's entry e of dir is. */
int pfs_cache_fill_one(struct pfs_cache *c, int dirfd, const char *dir,
		       const struct pfs_mirror_ent *e);
unsigned pfs_cache_bucket(uint64_t k);
/* ino's record (under c->lock); make: a new one if it has none. */
struct ent *pfs_cache_ent(struct pfs_cache *c, ino_t ino, bool make);
/* fd's path (and name in it) relative to the cache root, as the mirror
 * knows it. 0 or -errno (-EXDEV: not in the cache). */
int pfs_cache_path(struct pfs_cache *c, int fd, const char *name, char *buf, size_t len);
/* A live name (relative to the cache root) of the file fd, whose own
 * name was unlinked while it has others (cache_find.c). 0 or -ENOENT. */
int pfs_cache_find_live(struct pfs_cache *c, int fd, char *buf, size_t len);
/* Fill the directory dirfd from the mirror the first time; the same when a
 * name in it is about to be used. */
int pfs_cache_fill(struct pfs_cache *c, int dirfd);
int pfs_cache_fill_for(struct pfs_cache *c, int dirfd, const char *name);
/* Load the data of the stub file fd (st: its fstat). */
int pfs_cache_load(struct pfs_cache *c, int fd, const struct stat *st);
void pfs_cache_destroy(struct pfs_store *st);
/* --lazy-load off: read every directory of the mirror, and load file data
 * while the cache has more than reserve bytes free (cache_preload.c). */
int pfs_cache_preload(struct pfs_cache *c, uint64_t reserve);

/* cache_spill.c: files too large for memory. */
/* The reader fd of the cache file ino, opened / being released (c->lock
 * not held): known to a writer that moves the file out of memory. */
void pfs_cache_reader_add(struct pfs_cache *c, int fd, ino_t ino);
void pfs_cache_reader_del(struct pfs_cache *c, int fd);
bool pfs_cache_direct_ok(struct pfs_store *st, int fd, int flags);
int pfs_cache_write_prep(struct pfs_store *st, int fd, off_t off, size_t len, int failed);
/* The writer fd is released or fsync'ed: if it was spilled, its data is
 * queued (from the spill file) and true returned; release: forget it. */
bool pfs_cache_spill_queue(struct pfs_cache *c, int fd, bool release);
/* A descriptor of the writer fd is closed: if it is spilled, its data is
 * queued (from the spill file) when it changed since it last was, and
 * true returned. */
bool pfs_cache_spill_flush(struct pfs_cache *c, int fd);
/* Open the data of the stub file fd (st: its fstat) if it is too large for
 * memory: wait for a spilled write-back, then the mirror's file for a
 * reader. -ENOENT: not such a file, load it as usual; -EINPROGRESS: a
 * writer's, to open with pfs_cache_spill_open once in the writers' table. */
int pfs_cache_open_large(struct pfs_cache *c, int fd, const struct stat *st, int flags);
/* The writer fd of a stub too large for memory: its data copied from the
 * mirror to a spill file, which fd now opens. 0 or -errno (fd forgotten). */
int pfs_cache_spill_open(struct pfs_cache *c, int fd);
/* fd, just opened (flags) of the cache file ino marked SPILLED: if a writer
 * has it spilled now, fd is made to open the spill file too (a writer
 * shares it). 0 or -errno; -EAGAIN: its last writer's release has just
 * made it a stub, to be opened again (as a stub). */
int pfs_cache_spill_join(struct pfs_cache *c, int fd, ino_t ino, int flags);
/* Whether a writer of ino has it out of memory now. */
bool pfs_cache_spill_live(struct pfs_cache *c, ino_t ino);
/* fd was truncated to len: if it is spilled, its stub too (true). */
bool pfs_cache_spill_truncated(struct pfs_cache *c, int fd, off_t len);
/* fd's place in the table of files opened for writing (c->lock held). */
struct wfd **pfs_cache_wfd_locked(struct pfs_cache *c, int fd);
/* Filling name in dirfd for the mirror file mst: 1 if it was made a hard
 * link to the cache object of another of its names, 0 if it is to be made
 * (and then noted with pfs_cache_link_note), or -errno. */
int pfs_cache_link_fill(struct pfs_cache *c, int dirfd, const char *name,
			const struct stat *mst);
void pfs_cache_link_note(struct pfs_cache *c, int dirfd, const char *name,
			 const struct stat *mst);
void pfs_cache_links_free(struct pfs_cache *c);

/* In cache.c: a change's write-back op built (its path taken), recorded and
 * held before the tree makes the change, released with the tree's answer
 * (what each does is written beside it there); and the one refusal of a
 * change the mirror could not keep. */
struct pfs_wb_op *pfs_cache_op_at(struct pfs_cache *c, enum pfs_wb_kind k, int dirfd,
				  const char *name);
struct pfs_wb_op *pfs_cache_hold(struct pfs_cache *c, struct pfs_wb_op *op, ino_t ino);
void pfs_cache_released(struct pfs_cache *c, struct pfs_wb_op *op, int ret);
int pfs_cache_refuse(struct pfs_cache *c, unsigned cap, int err, int dirfd, const char *name);

/* In cache_attr.c: the store's chmod, chown, utimes and xattr operations. */
int pfs_cache_chmod(struct pfs_store *st, struct pfs_ref r, mode_t mode);
int pfs_cache_chown(struct pfs_store *st, struct pfs_ref r, uid_t uid, gid_t gid);
int pfs_cache_utimes(struct pfs_store *st, struct pfs_ref r, const struct timespec ts[2]);
ssize_t pfs_cache_getxattr(struct pfs_store *st, struct pfs_ref r, const char *name, void *buf,
			   size_t len);
ssize_t pfs_cache_listxattr(struct pfs_store *st, struct pfs_ref r, char *buf, size_t len);
int pfs_cache_setxattr(struct pfs_store *st, struct pfs_ref r, const char *name, const void *val,
		       size_t len, int flags);
int pfs_cache_removexattr(struct pfs_store *st, struct pfs_ref r, const char *name);

#endif
