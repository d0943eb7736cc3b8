/* store: the one way to an operation on a backing object.
 *
 * Everything above (view, layers, commit) reaches backing objects through a
 * struct pfs_store: opening a name, the *at() calls, metadata, extended
 * attributes, renames and links, data copies and syncs. Whiteouts and opaque
 * markers are made of these calls (layers/ovlfmt.c), so they go through the
 * store too. A store is an operations table chosen once (at mount, or when an
 * offline commit starts), as SQLite's VFS is: the local-directory store
 * (store/local.c) is the first; the fault-injecting store (store/fault.c)
 * wraps another and fails the N-th call of a kind, for the tests; the
 * memory cache written back to a mirror is the next.
 *
 * Handles. A store's handles are descriptors: a directory handle is what
 * the *at() calls take, a file handle is what read(2), write(2), fstat(2)
 * and kernel passthrough take. Operations that only read an open
 * descriptor (read, pread, fstat, getdents) stay system calls; everything
 * that names, makes, changes, syncs or copies goes through here.
 *
 * Every function returns 0 (or a descriptor, or a length) or a negative
 * errno, and leaves errno alone on purpose: callers never read errno after
 * one of these. */
#ifndef PFS_STORE_H
#define PFS_STORE_H

#include <linux/openat2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

/* An object: an open descriptor (fd >= 0, not O_PATH), or the entry name in
 * the directory dirfd, never followed if it is a symlink; with an empty
 * name, dirfd's own object (dirfd may be O_PATH, as AT_EMPTY_PATH takes). */
struct pfs_ref {
	int fd;
	int dirfd;
	const char *name;
};

static inline struct pfs_ref pfs_ref_fd(int fd)
{
	return (struct pfs_ref){.fd = fd, .dirfd = -1, .name = NULL};
}

static inline struct pfs_ref pfs_ref_at(int dirfd, const char *name)
{
	return (struct pfs_ref){.fd = -1, .dirfd = dirfd, .name = name};
}

/* The object an O_PATH descriptor holds (a node's). */
static inline struct pfs_ref pfs_ref_path(int fd)
{
	return (struct pfs_ref){.fd = -1, .dirfd = fd, .name = ""};
}

/* The kinds of call, as the fault store counts them. */
enum pfs_st_kind {
	PFS_ST_OPEN,
	PFS_ST_STAT,
	PFS_ST_MKDIR,
	PFS_ST_MKNOD,
	PFS_ST_SYMLINK,
	PFS_ST_LINK,
	PFS_ST_UNLINK,
	PFS_ST_RENAME,
	PFS_ST_READLINK,
	PFS_ST_CHMOD,
	PFS_ST_CHOWN,
	PFS_ST_UTIMES,
	PFS_ST_TRUNCATE,
	PFS_ST_GETXATTR,
	PFS_ST_SETXATTR,
	PFS_ST_LISTXATTR,
	PFS_ST_RMXATTR,
	PFS_ST_SYNC,
	PFS_ST_COPY,
	PFS_ST_NKINDS
};

/* The kind's name ("open", "rename", ...), and the kind of a name (-1: none). */
const char *pfs_st_kind_name(enum pfs_st_kind k);
int pfs_st_kind_of(const char *name, size_t len);

/* Called as data is copied: bytes since the last call. */
typedef void pfs_st_tick(void *arg, uint64_t bytes);

struct pfs_store;

struct pfs_store_ops {
	/* openat(2), or openat2(2) when how->resolve is not 0. */
	int (*open)(struct pfs_store *st, int dirfd, const char *name, const struct open_how *how);
	/* fstatat(2); AT_EMPTY_PATH with "" for the handle itself. */
	int (*stat)(struct pfs_store *st, int dirfd, const char *name, struct stat *out, int flags);
	int (*mkdir)(struct pfs_store *st, int dirfd, const char *name, mode_t mode);
	int (*mknod)(struct pfs_store *st, int dirfd, const char *name, mode_t mode, dev_t dev);
	int (*symlink)(struct pfs_store *st, const char *target, int dirfd, const char *name);
	int (*link)(struct pfs_store *st, int odirfd, const char *oname, int ndirfd,
		    const char *nname, int flags);
	int (*unlink)(struct pfs_store *st, int dirfd, const char *name, int flags);
	/* renameat2(2), flags RENAME_NOREPLACE / RENAME_EXCHANGE / RENAME_WHITEOUT. */
	int (*rename)(struct pfs_store *st, int odirfd, const char *oname, int ndirfd,
		      const char *nname, unsigned flags);
	ssize_t (*readlink)(struct pfs_store *st, int dirfd, const char *name, char *buf,
			    size_t len);
	int (*chmod)(struct pfs_store *st, struct pfs_ref r, mode_t mode);
	/* (uid_t)-1 / (gid_t)-1 leave that id as it is. */
	int (*chown)(struct pfs_store *st, struct pfs_ref r, uid_t uid, gid_t gid);
	/* ts as utimensat(2): UTIME_NOW and UTIME_OMIT allowed. */
	int (*utimes)(struct pfs_store *st, struct pfs_ref r, const struct timespec ts[2]);
	int (*truncate)(struct pfs_store *st, int fd, off_t len);
	ssize_t (*getxattr)(struct pfs_store *st, struct pfs_ref r, const char *name, void *buf,
			    size_t len);
	int (*setxattr)(struct pfs_store *st, struct pfs_ref r, const char *name, const void *val,
			size_t len, int flags);
	ssize_t (*listxattr)(struct pfs_store *st, struct pfs_ref r, char *buf, size_t len);
	int (*removexattr)(struct pfs_store *st, struct pfs_ref r, const char *name);
	/* fsync(2), or fdatasync(2) when data_only. */
	int (*sync)(struct pfs_store *st, int fd, bool data_only);
	/* Make the empty file dst hold the first size bytes of src at the same
	 * offsets, holes kept as holes (or shared blocks, when clone is true
	 * and the filesystem can: then -EOPNOTSUPP/-EXDEV/-EINVAL say it
	 * cannot, and nothing was done). */
	int (*copy)(struct pfs_store *st, int dst, int src, off_t size, bool clone,
		    pfs_st_tick *tick, void *arg);
	/* fd, a file opened through this store, is about to be closed by the
	 * one who opened it (the view, at RELEASE). NULL: nothing to do. */
	void (*release)(struct pfs_store *st, int fd);
	/* A descriptor of fd's open file, a file opened for writing through
	 * this store, is being closed (FLUSH: close(2) waits for it, RELEASE
	 * may come after the caller's next call). 0 or -errno, which close(2)
	 * returns. NULL: nothing to do, and the kernel need not ask. */
	int (*flush)(struct pfs_store *st, int fd);
	/* May the kernel serve the open file fd (opened with flags) itself, by
	 * passthrough, so that its writes never reach the daemon? A store that
	 * must see writes to bound its own use says no. NULL: yes. */
	bool (*direct_ok)(struct pfs_store *st, int fd, int flags);
	/* The daemon is about to write len bytes at off to fd, a file opened
	 * through this store (failed: 0, or the -errno the last try of this
	 * write got). The store may wait, make room, or move the file's data
	 * elsewhere under the same descriptor number. 0: (re)try the write;
	 * else the -errno to answer with. NULL: write. */
	int (*write_prep)(struct pfs_store *st, int fd, off_t off, size_t len, int failed);
	/* fallocate(2) on fd, a file opened through this store. NULL: the
	 * system call itself. */
	int (*fallocate)(struct pfs_store *st, int fd, int mode, off_t off, off_t len);
	/* The path of the object (dirfd, name) relative to the store's root
	 * (name NULL or "": dirfd's own), for a store whose objects are not
	 * where /proc shows them beneath the source (the memory cache's
	 * detached filesystem). A wrapper that records paths (the history)
	 * asks it. 0 or -errno (-EXDEV: not the store's). NULL: /proc tells. */
	int (*path)(struct pfs_store *st, int dirfd, const char *name, char *buf, size_t len);
	/* Free the store (not the local one, which is static). */
	void (*destroy)(struct pfs_store *st);
};

struct pfs_store {
	const struct pfs_store_ops *ops;
	const char *name; /* "local", "fault", ... for status and messages */
};

/* The local-directory store: the kernel's own calls. Static, stateless,
 * shared by every mount and commit in the process. */
struct pfs_store *pfs_store_local(void);

/* The fault-injecting store: st's calls, except that the N-th call of a
 * kind fails. spec is "KIND:N[-][:ERRNO]" items joined by commas: the N-th
 * call of KIND (counted from 1 for this store) fails with ERRNO (a number
 * or a name such as EIO, ENOSPC; EIO if left out); with "-", that call and
 * every later one of its kind fail. NULL and -EINVAL (message in err) for a
 * bad spec. */
struct pfs_store *pfs_store_fault_new(struct pfs_store *inner, const char *spec, char *err,
				      size_t errlen);
/* How many calls of kind k the fault store has seen (for the tests). */
unsigned long pfs_store_fault_count(struct pfs_store *st, enum pfs_st_kind k);

/* The store a process uses: the local one, wrapped in a fault store when
 * the environment variable PRISMFS_FAULT holds a spec (tests only; see
 * tests/integration/test_store_faults.py). NULL and a message in err when
 * the spec is bad. */
struct pfs_store *pfs_store_default(char *err, size_t errlen);

void pfs_store_free(struct pfs_store *st);

/* The calls, for callers. */
static inline int pfs_st_open(struct pfs_store *st, int dirfd, const char *name,
			      const struct open_how *how)
{
	return st->ops->open(st, dirfd, name, how);
}

static inline int pfs_st_openat(struct pfs_store *st, int dirfd, const char *name, int flags,
				mode_t mode)
{
	struct open_how how = {.flags = (uint64_t)(unsigned)flags, .mode = mode, .resolve = 0};

	return st->ops->open(st, dirfd, name, &how);
}

static inline int pfs_st_stat(struct pfs_store *st, int dirfd, const char *name,
			      struct stat *out, int flags)
{
	return st->ops->stat(st, dirfd, name, out, flags);
}

static inline int pfs_st_fstat(struct pfs_store *st, int fd, struct stat *out)
{
	return st->ops->stat(st, fd, "", out, 0x1000 /* AT_EMPTY_PATH */);
}

static inline int pfs_st_mkdir(struct pfs_store *st, int dirfd, const char *name, mode_t mode)
{
	return st->ops->mkdir(st, dirfd, name, mode);
}

static inline int pfs_st_mknod(struct pfs_store *st, int dirfd, const char *name, mode_t mode,
			       dev_t dev)
{
	return st->ops->mknod(st, dirfd, name, mode, dev);
}

static inline int pfs_st_symlink(struct pfs_store *st, const char *target, int dirfd,
				 const char *name)
{
	return st->ops->symlink(st, target, dirfd, name);
}

static inline int pfs_st_link(struct pfs_store *st, int odirfd, const char *oname, int ndirfd,
			      const char *nname, int flags)
{
	return st->ops->link(st, odirfd, oname, ndirfd, nname, flags);
}

static inline int pfs_st_unlink(struct pfs_store *st, int dirfd, const char *name, int flags)
{
	return st->ops->unlink(st, dirfd, name, flags);
}

static inline int pfs_st_rename(struct pfs_store *st, int odirfd, const char *oname, int ndirfd,
				const char *nname, unsigned flags)
{
	return st->ops->rename(st, odirfd, oname, ndirfd, nname, flags);
}

static inline ssize_t pfs_st_readlink(struct pfs_store *st, int dirfd, const char *name,
				      char *buf, size_t len)
{
	return st->ops->readlink(st, dirfd, name, buf, len);
}

static inline int pfs_st_chmod(struct pfs_store *st, struct pfs_ref r, mode_t mode)
{
	return st->ops->chmod(st, r, mode);
}

static inline int pfs_st_chown(struct pfs_store *st, struct pfs_ref r, uid_t uid, gid_t gid)
{
	return st->ops->chown(st, r, uid, gid);
}

static inline int pfs_st_utimes(struct pfs_store *st, struct pfs_ref r,
				const struct timespec ts[2])
{
	return st->ops->utimes(st, r, ts);
}

int pfs_st_fallocate(struct pfs_store *st, int fd, int mode, off_t off, off_t len);

static inline int pfs_st_truncate(struct pfs_store *st, int fd, off_t len)
{
	return st->ops->truncate(st, fd, len);
}

static inline ssize_t pfs_st_getxattr(struct pfs_store *st, struct pfs_ref r, const char *name,
				      void *buf, size_t len)
{
	return st->ops->getxattr(st, r, name, buf, len);
}

static inline int pfs_st_setxattr(struct pfs_store *st, struct pfs_ref r, const char *name,
				  const void *val, size_t len, int flags)
{
	return st->ops->setxattr(st, r, name, val, len, flags);
}

static inline ssize_t pfs_st_listxattr(struct pfs_store *st, struct pfs_ref r, char *buf,
				       size_t len)
{
	return st->ops->listxattr(st, r, buf, len);
}

static inline int pfs_st_removexattr(struct pfs_store *st, struct pfs_ref r, const char *name)
{
	return st->ops->removexattr(st, r, name);
}

static inline int pfs_st_sync(struct pfs_store *st, int fd, bool data_only)
{
	return st->ops->sync(st, fd, data_only);
}

static inline void pfs_st_release(struct pfs_store *st, int fd)
{
	if (st->ops->release)
		st->ops->release(st, fd);
}

static inline int pfs_st_flush(struct pfs_store *st, int fd)
{
	return st->ops->flush ? st->ops->flush(st, fd) : 0;
}

static inline bool pfs_st_flush_wanted(const struct pfs_store *st)
{
	return st->ops->flush != NULL;
}

/* Does the store want some writers served by the daemon (direct_ok)? */
static inline bool pfs_st_serves_writers(const struct pfs_store *st)
{
	return st->ops->direct_ok != NULL;
}

static inline bool pfs_st_direct_ok(struct pfs_store *st, int fd, int flags)
{
	return !st->ops->direct_ok || st->ops->direct_ok(st, fd, flags);
}

static inline int pfs_st_write_prep(struct pfs_store *st, int fd, off_t off, size_t len,
				    int failed)
{
	return st->ops->write_prep ? st->ops->write_prep(st, fd, off, len, failed) : failed;
}

static inline int pfs_st_copy(struct pfs_store *st, int dst, int src, off_t size, bool clone,
			      pfs_st_tick *tick, void *arg)
{
	return st->ops->copy(st, dst, src, size, clone, tick, arg);
}

#endif
