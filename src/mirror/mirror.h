/* mirror: where a memory cache's files come from and go back to — the
 * cache's only way to its mirror, an operations table chosen at mount by
 * the mirror's address (as store.h is for backing objects):
 *
 *   a directory or file:///path  mirror/local.c   (fd-based, fast paths)
 *   http(s)://, dav(s)://        mirror/remote.c over mirror/dav.c
 *   s3://BUCKET/PREFIX           mirror/remote.c over mirror/s3.c
 *
 * Paths are relative to the mirror's root, no leading '/', "" the root
 * itself. The cache reads the mirror lazily (list a directory the first time
 * it is used, fetch a file's data the first time it is opened) and writes
 * it back through the write-back queue (cache/wbq.h), whose worker calls
 * apply() for each op in order and flush() before a waiter is answered.
 *
 * Every function returns 0 (or a length) or a negative errno with, where
 * it takes one, a one-line message in err. A mirror that cannot be reached
 * answers -EIO, -ECONNREFUSED, -ETIMEDOUT or -ECONNRESET; the queue keeps
 * the op and retries, so nothing is dropped.
 *
 * Conflicts are the mirror's business: each implementation remembers what
 * it last loaded or wrote for a cache file (its base, by key) and, when a
 * write-back finds something else there, keeps both versions (the cache's
 * under NAME.prismfs-conflict-YYYYMMDDTHHMMSSZ), counts it and returns 0.
 * Later ops by path on that file (op->key set: attrs, xattrs, link,
 * rename, unlink) act on the cache's copy, never on the mirror's file.
 *
 * Lock order: an implementation's own lock only, never held across a call
 * into the cache. */
#ifndef PFS_MIRROR_H
#define PFS_MIRROR_H

#include "mirror/wbop.h" /* the changes apply() takes (moved from cache/wbq.h) */
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* What a mirror can keep (a cache refuses a change its mirror could not
 * write back, as a filesystem without symlinks refuses symlink(2)). */
#define PFS_MIRROR_SYMLINK 0x01u /* symlinks */
#define PFS_MIRROR_HARDLINK 0x02u /* several names of one file */
#define PFS_MIRROR_SPECIAL 0x04u /* fifos, sockets, devices */
#define PFS_MIRROR_XATTR 0x08u   /* extended attributes */
#define PFS_MIRROR_MODE 0x10u    /* permission bits */
#define PFS_MIRROR_OWNER 0x20u   /* uid and gid */
#define PFS_MIRROR_MTIME 0x40u   /* modification times */
#define PFS_MIRROR_COND 0x80u    /* conflicts are detected atomically by the
				  * server (conditional writes), not by a look
				  * just before the write */
#define PFS_MIRROR_LISTMETA 0x100u /* a listing carries the mode, owner and
				    * times kept; without it (S3) they come
				    * with a file's data, and a directory's
				    * with a stat of its own when it is filled */

/* One entry of a directory listing. st: what the mirror says (a remote
 * mirror fills st_mode's type and, where it keeps them, permission bits,
 * st_size, st_mtim; st_nlink 1, st_ino a stable hash of the path). */
struct pfs_mirror_ent {
	char *name;
	struct stat st;
	char *target; /* a symlink's target, or NULL */
};

struct pfs_mirror_dir {
	struct pfs_mirror_ent *v;
	size_t n, cap;
};

void pfs_mirror_dir_free(struct pfs_mirror_dir *d);
/* Append one entry (name and target copied). 0 or -ENOMEM. */
int pfs_mirror_dir_add(struct pfs_mirror_dir *d, const char *name, const struct stat *st,
		       const char *target);

struct pfs_mirror;

struct pfs_mirror_ops {
	const char *kind; /* "local", "webdav", "s3": status shows it */
	unsigned caps;    /* PFS_MIRROR_* */

	/* path's metadata, not following a symlink. -ENOENT when absent. */
	int (*stat)(struct pfs_mirror *m, const char *path, struct stat *st);
	/* The entries of directory path, without "." and "..", and without
	 * the mirror's own temporaries. -ENOENT / -ENOTDIR. */
	int (*list)(struct pfs_mirror *m, const char *path, struct pfs_mirror_dir *out);
	/* Give the cache's object dst (through store in) what the mirror keeps
	 * of path beyond its type and data: owner, mode, times, xattrs, as
	 * caps allow. st is what stat or list said of it. */
	int (*meta)(struct pfs_mirror *m, const char *path, const struct stat *st,
		    struct pfs_store *in, struct pfs_ref dst);
	/* Write path's whole content into fd (empty, at offset 0), and
	 * remember it as the base of cache file key; *st what was read (its
	 * size and times). Memory stays bounded: data is streamed. */
	int (*fetch)(struct pfs_mirror *m, const char *path, uint64_t key, int fd,
		     struct stat *st);
	/* Remember what path holds now as key's base without reading it (a
	 * file the cache truncated on open). 0 or -errno. */
	int (*remember)(struct pfs_mirror *m, uint64_t key, const char *path);
	void (*forget)(struct pfs_mirror *m, uint64_t key);

	/* pfs_wb_apply_fn and pfs_wb_flush_fn (arg = m). */
	int (*apply)(void *m, struct pfs_wb_op *op, char *err, size_t errlen);
	int (*flush)(void *m, char *err, size_t errlen);
	/* Optional, pfs_wb_apply_new_fn (arg = m): a new file in one apply. */
	int (*apply_new)(void *m, struct pfs_wb_op *const *ops, unsigned n, char *err,
			 size_t errlen);

	/* Conflicts met so far, and the last one's report (buf may be NULL). */
	unsigned long (*conflicts)(struct pfs_mirror *m, char *buf, size_t len);
	/* One line for prismfs status: what the mirror is and which
	 * guarantees hold with it. */
	void (*describe)(struct pfs_mirror *m, char *buf, size_t len);

	/* Optional (NULL where the mirror is not a local filesystem): */
	/* Open path for reading, locally (a file too large for the cache is
	 * read from the mirror directly). */
	int (*open)(struct pfs_mirror *m, const char *path, int flags);
	/* An unnamed read-write file on the mirror's filesystem (a file too
	 * large for the cache is written there, cache_spill.c). */
	int (*tmpfile)(struct pfs_mirror *m);
	/* path's inode number, 0 when absent (the journal's replay tells
	 * whether an exchange is done). */
	int64_t (*ino)(struct pfs_mirror *m, const char *path);
	/* Optional (bases live in memory): key's base, or the conflict copy
	 * its write-backs go to, as one line to keep (the journal records it
	 * with each op on the file), -ENOENT when it has none; and key's base
	 * set back from such a line (a replay after a crash), unless it has
	 * one. */
	int (*base_save)(struct pfs_mirror *m, uint64_t key, char *buf, size_t len);
	int (*base_load)(struct pfs_mirror *m, uint64_t key, const char *line);

	void (*close)(struct pfs_mirror *m);
};

struct pfs_mirror {
	const struct pfs_mirror_ops *ops;
};

struct pfs_mirror_opts {
	const char *s3_endpoint; /* s3:// only: the server's URL */
	const char *s3_region;   /* s3:// only (NULL: us-east-1) */
	const char *s3_profile;  /* ~/.aws/credentials profile (NULL: AWS_PROFILE or default) */
	const char *conflict_dir;/* unused for now */
	long timeout_ms;         /* one request's limit (remote), 0: default */
};

/* Open the mirror at address (a path, file://, http(s)://, dav(s)://,
 * s3://), the local kind through store st. 0, or -errno and a one-line
 * message in err naming the mirror. */
int pfs_mirror_open(struct pfs_mirror **out, const char *address, struct pfs_store *st,
		    const struct pfs_mirror_opts *o, char *err, size_t errlen);

/* address as it may be shown (status, messages): without a user:password@
 * part. */
void pfs_mirror_shown_address(const char *address, char *buf, size_t len);

static inline void pfs_mirror_close(struct pfs_mirror *m)
{
	if (m)
		m->ops->close(m);
}

#endif
