/* ns: the namespace a mount shows, as one operations table with two
 * implementations, chosen once at mount (fs->ns): the plain mirror of
 * SOURCE under the mapping table (view/ns_plain.c), or copy-on-write layers
 * over it (layers/ns_layered.c); with --history, the plain one plus the
 * read-only .history tree (view/ns_history.c). The view's own functions (dir.c, file.c,
 * readdir.c, xattr.c, attr.c, mapload.c) do what both share -- checks, the
 * kernel's invalidations, open-file bookkeeping -- and call fs->ns where
 * the two differ. Entries return as the view's functions do: 0 (or a
 * count, a descriptor) or -errno. The transport never sees this header. */
#ifndef PFS_NS_H
#define PFS_NS_H

#include <dirent.h>

#include "view/view.h"

/* One name of a listing: its inode number as a lookup shows it, DT_ type. */
typedef int pfs_ns_list_cb(void *arg, const char *name, ino_t ino, unsigned char type);

struct pfs_ns_ops {
	const char *name; /* "plain", "layered" */

	/* Names. Made names are looked up into e (one kernel reference). */
	int (*lookup)(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		      struct fuse_entry_param *e);
	int (*mknod)(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		     const char *name, mode_t mode, dev_t rdev, struct fuse_entry_param *e);
	int (*mkdir)(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		     const char *name, mode_t mode, struct fuse_entry_param *e);
	int (*symlink)(struct pfs_fs *fs, const struct fuse_ctx *ctx, const char *target,
		       struct pfs_node *parent, const char *name, struct fuse_entry_param *e);
	/* A new name of n, which the view found writable. */
	int (*link)(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node *newparent,
		    const char *newname, struct fuse_entry_param *e);
	int (*remove)(struct pfs_fs *fs, struct pfs_node *parent, const char *name, bool dir);
	int (*rename)(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		      struct pfs_node *newparent, const char *newname, unsigned int flags);
	/* O_CREAT: made (or, without O_EXCL, an existing name opened), looked
	 * up into e, and served as pfs_view_open serves an open (fi->fh). */
	int (*create)(struct pfs_fs *fs, struct pfs_req *rq, const struct fuse_ctx *ctx,
		      struct pfs_node *parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi, struct fuse_entry_param *e);

	/* A symlink's target into buf (size > 0), NUL-terminated. */
	int (*readlink)(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size);

	/* Attributes. n's attributes when no open file answers for them. */
	int (*getattr)(struct pfs_fs *fs, struct pfs_node *n, struct stat *st);
	/* Make st (read from n's object) what this namespace shows of n.
	 * false: final; true: the table's mode and owner still apply. */
	bool (*fix_attr)(struct pfs_fs *fs, struct pfs_node *n, struct stat *st);
	/* The namespace's own verdict on changing n, before the table's:
	 * 0 or -EROFS. */
	int (*may_change)(struct pfs_fs *fs, struct pfs_node *n);
	/* access(2) of n; the view has already refused what may not change. */
	int (*access)(struct pfs_fs *fs, struct pfs_node *n, int mask);
	/* A descriptor (borrowed) on the filesystem whose room statfs shows. */
	int (*statfs_fd)(struct pfs_fs *fs, struct pfs_node *n);
	/* Before n's data or metadata change (open_flags: for an open, else
	 * -1): -ESTALE when the kernel must look the name up again. */
	int (*prepare_change)(struct pfs_fs *fs, struct pfs_node *n, int open_flags);
	/* Serve an open of n (fd in fi->fh): 1 when the namespace took it
	 * (served by the daemon, fi->fh marked), 0 to serve it as any open. */
	int (*serve_open)(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi);

	/* Listings. Is n listed from a snapshot (not the backing stream)? */
	bool (*snapshot)(struct pfs_fs *fs, struct pfs_node *n);
	/* An fd to list n's backing directory (O_RDONLY | O_DIRECTORY), or
	 * -errno; *bare (if not NULL) true when n is nevertheless listed
	 * without one (the table's names still show). */
	int (*open_dir)(struct pfs_fs *fs, struct pfs_node *n, bool *bare);
	/* n's names, "." and ".." first; dp: the handle's stream on n's
	 * backing directory (NULL: none), read from its start. */
	int (*list)(struct pfs_fs *fs, struct pfs_node *n, DIR *dp, pfs_ns_list_cb *cb, void *arg);

	/* Extended attributes. n's first name: the directory holding it. */
	int (*node_name)(struct pfs_fs *fs, struct pfs_node *n, int *dirfd, char *name,
			 size_t len);
	ssize_t (*getxattr)(struct pfs_fs *fs, struct pfs_node *n, const char *name, char *buf,
			    size_t size);
	ssize_t (*listxattr)(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size);
	/* ... n found writable by the view. */
	int (*setxattr)(struct pfs_fs *fs, struct pfs_node *n, const char *name,
			const char *value, size_t size, int flags);
	int (*removexattr)(struct pfs_fs *fs, struct pfs_node *n, const char *name);

	/* The mapping table changed. cb(fs, fd) (fd owned, or -errno) for
	 * each directory whose names the root shows. */
	void (*root_dirs)(struct pfs_fs *fs, void (*cb)(struct pfs_fs *fs, int fd));
	/* The node the kernel holds for (parent, name), held (or NULL), and
	 * whether a real object is there; synthetic: a synthetic directory
	 * the kernel holds there counts too. */
	struct pfs_node *(*held)(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
				 bool *exists, bool synthetic);
	/* See pfs_view_targets_changed. */
	uint64_t (*targets_changed)(struct pfs_fs *fs, struct pfs_node *parent, const char *name);
};

extern const struct pfs_ns_ops pfs_ns_plain;   /* view/ns_plain.c */
extern const struct pfs_ns_ops pfs_ns_layered; /* layers/ns_layered.c */
extern const struct pfs_ns_ops pfs_ns_history; /* view/ns_history.c: plain or layered
                                                 * + .history */

/* The table for fs, once its layers (if any) are open. */
static inline const struct pfs_ns_ops *pfs_ns_for(const struct pfs_fs *fs)
{
	return fs->past ? &pfs_ns_history : fs->layers ? &pfs_ns_layered : &pfs_ns_plain;
}

/* file.c, for the create entries: clear O_DIRECT off a new open's fd (see
 * file.c); clear the set-ID bits a write by the caller would; serve the
 * open fi of n (fi->fh set) as pfs_view_open does, e's attributes uncached
 * if it is a writer's (fresh: n is a new object no kernel inode holds). */
int pfs_file_nodirect(int fd, int flags);
int pfs_file_kill_for_caller(struct pfs_fs *fs, const struct pfs_req *rq, int fd);
int pfs_file_serve(struct pfs_fs *fs, struct pfs_req *rq, struct pfs_node *n,
		   struct fuse_file_info *fi, struct fuse_entry_param *e, bool fresh);

/* backing.c: n's extended attributes on its backing object, as stored. */
ssize_t pfs_backing_getxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name, char *buf,
			     size_t size);
ssize_t pfs_backing_listxattr(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size);
int pfs_backing_setxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name,
			 const char *value, size_t size, int flags);
int pfs_backing_removexattr(struct pfs_fs *fs, struct pfs_node *n, const char *name);
/* dir.c: n's symlink target, read from its backing object. */
int pfs_backing_readlink(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size);
/* access(2) of n's object, for the caller's effective ids. */
int pfs_backing_access(struct pfs_fs *fs, struct pfs_node *n, int mask);

/* The plain parts that live beside what they share: the root under a key
 * "/" (attr.c) and the table's rechecks (mapload.c). */
int pfs_plain_open_dir(struct pfs_fs *fs, struct pfs_node *n, bool *bare);
uint64_t pfs_plain_targets_changed(struct pfs_fs *fs, struct pfs_node *parent, const char *name);

#endif
