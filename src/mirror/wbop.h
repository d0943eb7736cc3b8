/* wbop: one change made in a memory cache, on its way to the mirror —
 * what the write-back queue (cache/wbq.h) carries and a mirror's apply
 * (mirror/mirror.h) takes. */
#ifndef PFS_WBOP_H
#define PFS_WBOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

enum pfs_wb_kind {
	PFS_WB_MKDIR,   /* path, mode */
	PFS_WB_CREATE,  /* path, mode: an empty regular file (data follows as DATA) */
	PFS_WB_SYMLINK, /* path, target */
	PFS_WB_MKNOD,   /* path, mode, rdev (fifos, sockets, devices) */
	PFS_WB_LINK,    /* path (existing) -> path2 (new name) */
	PFS_WB_UNLINK,  /* path */
	PFS_WB_RMDIR,   /* path */
	PFS_WB_RENAME,  /* path -> path2, flags (RENAME_*) */
	PFS_WB_DATA,    /* path: its content is the cache file's (fd) */
	PFS_WB_ATTR,    /* path: mode / owner / times, as mask says */
	PFS_WB_SETXATTR,/* path, xname, xval */
	PFS_WB_RMXATTR, /* path, xname */
	PFS_WB_NKINDS
};

#define PFS_WB_MODE 1u
#define PFS_WB_OWNER 2u
#define PFS_WB_ATIME 4u
#define PFS_WB_MTIME 8u

/* DATA flags: datafd is the op's alone, and may become the mirror's file
 * itself (linked in) rather than be copied. */
#define PFS_WB_DATA_MOVE 1u
/* DATA flags: datafd is a --journal's spill file that no writer holds any
 * more (cache/journal_spill.c): dropped once the op is applied. A mirror
 * ignores it. */
#define PFS_WB_DATA_SPILLED 2u

/* What the mirror's copy of a file was when the cache loaded it (or last
 * wrote it back): a write-back finding something else there is a conflict. */
struct pfs_wb_base {
	bool valid;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	struct timespec ctime;
};

struct pfs_wb_op {
	struct pfs_wb_op *next;
	struct pfs_wb_op *knext; /* the queue's index of DATA ops by key */
	uint64_t seq;            /* given by pfs_wbq_push */
	uint64_t when_ns;        /* CLOCK_MONOTONIC at push */
	enum pfs_wb_kind kind;
	char *path;              /* relative to the roots, no leading '/' */
	char *path2;             /* LINK, RENAME */
	char *target;            /* SYMLINK */
	mode_t mode;
	uid_t uid;
	gid_t gid;
	dev_t rdev;
	unsigned flags;          /* RENAME: RENAME_*; SETXATTR: XATTR_* */
	unsigned mask;           /* ATTR: PFS_WB_* */
	struct timespec atime, mtime;
	char *xname;
	void *xval;
	size_t xlen;
	int fd;                  /* DATA: the cache file, readable (owned), or -1 */
	int datafd;              /* DATA: where its data is when not in fd (a file
				  * too large for memory, cache_spill.c), or -1;
				  * fd still gives size, mode and times (owned) */
	uint64_t key;            /* DATA: the cache inode, to merge repeated writes;
				  * CREATE, ATTR, xattrs, LINK, and UNLINK and
				  * RENAME of a file's only name: the regular
				  * file's, whose conflict copy (mirror.h) they
				  * act on; 0: none */
	uint64_t key2;           /* RENAME: the key of the file it replaces at
				  * path2 (its only name), or 0 */
	uint64_t bytes;          /* DATA: counted as dirty until applied */
	struct pfs_wb_base base; /* DATA: see above; the apply updates it.
				  * UNLINK (of key), RENAME (over key2): the
				  * mirror's file as the cache listed it, when
				  * it never loaded it (size and mtime only),
				  * for a mirror without a base of it */
	/* CREATE: the file an attempt of this op made on the mirror (its
	 * inode and birth time in ns; 0: none known). A name found taken is
	 * this op's own earlier attempt (a retry, a journal replay) only if it
	 * holds that file; anything else was made behind the mount: a
	 * conflict. made_fn, where set (the journal), records them before the
	 * file gets its name, so a replay after a kill can tell too — a
	 * callback because a mirror may not call into the cache. */
	int64_t made_ino, made_bt;
	void (*made_fn)(void *arg, const struct pfs_wb_op *op);
	void *made_arg;
	/* A change recorded before the cache's tree makes it (cache/wbq.h:
	 * pfs_wbq_push_held): not applied while held; cancelled, never
	 * applied, when the tree refused it. */
	bool held, cancelled;
	bool amend;                       /* its record is to be made again at
					   * release (the tree did otherwise
					   * than the record said) */
	bool fix_key;                     /* its key is known at release only
					   * (a CREATE of open(2)): the next
					   * record carries it */
	const uint64_t *fixes;            /* while recorded: (seq, key) pairs of
					   * such ops released since the last
					   * record */
	unsigned nfixes;
	struct pfs_wb_op *hnext;          /* the queue's list of held ops */
	const struct pfs_wb_op *held_ops; /* while recorded: the ops held then
					   * (hnext list; cache/journal.h) */
	uint64_t tino;                    /* RENAME, LINK, UNLINK, RMDIR: the
					   * cache tree's inode at path before
					   * the change (0: unknown) */
};

/* A new op of kind k on path (copied). NULL when out of memory. */
struct pfs_wb_op *pfs_wb_op_new(enum pfs_wb_kind k, const char *path);
void pfs_wb_op_free(struct pfs_wb_op *op);
const char *pfs_wb_kind_name(enum pfs_wb_kind k);

/* Apply op to the mirror. 0 or -errno, with a one-line message in err. A
 * conflict is not a failure: the callback keeps both versions and says so
 * as the mirror's own business (mirror/mirror.h). */
typedef int pfs_wb_apply_fn(void *arg, struct pfs_wb_op *op, char *err, size_t errlen);
/* Optional: apply a new file's run of n ops (ops[0..n-1]) as one:
 * first a CREATE, then ATTR, SETXATTR or RMXATTR of its path, last its DATA
 * (no datafd). The mirror shows the file whole, or not at all, never the
 * steps between (which the queue's order allowed it to show): the same
 * states as applying them one by one, fewer of them. 0 when all n are
 * applied; 1 when it will not (the name is taken: a replay or a change
 * behind the mount, which apply sorts out one op at a time), nothing done;
 * or -errno (nothing visible done: tried again as a failure). */
typedef int pfs_wb_apply_new_fn(void *arg, struct pfs_wb_op *const *ops, unsigned n, char *err,
				size_t errlen);
/* Make everything applied so far durable on the mirror (syncfs): called
 * before a waiter is told its ops are applied. 0 or -errno. */
typedef int pfs_wb_flush_fn(void *arg, char *err, size_t errlen);

#endif
