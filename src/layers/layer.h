/* layer: copy-on-write layers — a writable upper directory over read-only
 * lowers, in kernel overlayfs's on-disk format (whiteouts, opaque
 * directories, overlay xattrs), so an upper written here mounts under
 * `mount -t overlay` and the other way round. */
#ifndef PFS_LAYER_H
#define PFS_LAYER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "layers/layer_opts.h"

struct pfs_fs;
struct pfs_map;
struct pfs_node;
struct fuse_entry_param;
struct fuse_ctx;
struct fuse_file_info;

struct pfs_layer_spec {
	const char *upper;          /* writable; every change lands here (NULL: a
				     * read-only mount of the lowers only) */
	const char *work;           /* empty scratch directory on upper's filesystem */
	const char *const *lowers;  /* read-only, highest first; lowers[0] is SOURCE */
	size_t nlowers;
	size_t ndata;               /* the last ndata lowers are data-only (the
				     * kernel's lowerdir=A::D): never merged, they
				     * hold only the data of metacopy files above */
	enum pfs_whiteout whiteout;
	bool map;                   /* the mount has a mapping table (--map) */
	enum pfs_action action;     /* its --on-unmount */
	bool userxattr;             /* overlay xattrs in user.overlay.* only (the
				     * kernel's userxattr), never trusted. */
	enum pfs_redirect redirect; /* redirect_dir= */
	bool metacopy;              /* metacopy=on: metadata-only copy-up */
	bool lower_pt;              /* lower files by kernel passthrough (their
				     * opens stay below when copied up) */
};

/* Open the layers of spec for fs (whose root_fd is SOURCE, already open).
 * Checks them first: each exists and is a directory, upper is writable,
 * work is on upper's filesystem and neither inside the other, nothing is
 * the mount point or below it. 0, or -errno with one line in err. */
int pfs_layers_open(struct pfs_fs *fs, const struct pfs_layer_spec *spec, char *err,
		    size_t errlen);
/* With --map: mark the upper as holding a mapped view's paths, so no
 * commit takes it (once every other check has passed: a refused mount
 * changes nothing). 0, or -errno with one line in err. */
int pfs_layers_mark_mapped(struct pfs_fs *fs, char *err, size_t errlen);
/* layer_past.c: the merged tree at each snapshot of a mount with --history
 * (whose store journals the upper: upper is its past), laid over the
 * lowers; with export_layer. NULL: no memory. Freed by
 * pfs_layers_past_free. */
struct pfs_past;
const struct pfs_past *pfs_layers_past(struct pfs_fs *fs, const struct pfs_past *upper);
void pfs_layers_past_free(const struct pfs_past *past);

/* Close what pfs_layers_open opened (after the session has ended). */
void pfs_layers_close(struct pfs_fs *fs);

/* The layers of a mount. Layer 0 is the upper, 1.. the lowers, highest
 * first. */
struct pfs_layers {
	size_t n;
	size_t ndata;             /* the last ndata layers are data-only: no
				   * merge reaches them; only a metacopy file's
				   * absolute redirect does (layer_find.c) */
	int *root;                /* O_PATH on each layer's root directory */
	dev_t *dev;               /* each layer's filesystem */
	uint8_t *fsid;            /* 0 for the upper's filesystem, else 1.. */
	bool onedev;              /* one filesystem: inode numbers need no tag */
	bool no_upper;            /* lowers only, read-only: layer 0 is empty (root[0]
				   * is -1) and no node is ever in it */
	int work_fd;              /* O_PATH on the work directory */
	bool wh_file;             /* whiteouts as `.wh.NAME` files */
	bool wh_auto;             /* ... after mknod was refused */
	char xprefix[24];         /* "trusted.overlay." or "user.overlay." */
	bool xattrs;              /* the upper's filesystem takes overlay xattrs */
	bool redir_make;          /* a renamed directory with lower parts gets an
				   * overlay.redirect (redirect_dir=on) */
	bool redir_follow;        /* lookups follow overlay.redirect (on, follow) */
	bool metacopy;            /* metacopy=on: a change of metadata copies no
				   * data (overlay.metacopy); lookups read such
				   * files' data from the layer below */
	bool lower_pt;            /* --lower-passthrough: a lower file's read-only
				   * opens use kernel passthrough too; a copy-up
				   * leaves them reading the lower data (they
				   * never reach the daemon) */
	bool mapped;              /* the upper holds virtual paths of a mapping
				   * table: commit refused (PFS_OVL_MAPPED) */
	bool map_given;           /* this mount has one (mark the upper) */
	pthread_mutex_t lock;     /* every name change and copy-up: they must see
				   * each other's upper whole */
	unsigned long tmpseq;     /* names of temporaries in work, under lock */
};

#define PFS_LAYERS_MAX 200 /* the upper and up to 199 lowers */

/* fd[i] of a node whose fds the budget closed: the layer has an object
 * there, reopened from hs[i] when the node is next used (pfs_node_fd). */
#define PFS_LFD_CLOSED (-2)

struct file_handle;

struct pfs_lhandle {
	dev_t dev;
	struct file_handle *h;
};

/* A node's name in each layer. fd[top] is the node's fd; for a directory
 * fd[top..bottom] (where >= 0) are merged, highest first. Whoever reads
 * fd[] of a node has it pinned (pfs_node_fd, pfs_layer_ldir_get): then
 * none is PFS_LFD_CLOSED. */
struct pfs_lnode {
	uint8_t top;
	uint8_t bottom;
	bool meta;                /* a metacopy file: fd[top] is its object (the
				   * upper's, or a lower metacopy file's), fd[bottom]
				   * the lower file holding its data (under the
				   * node's shard lock once a node's) */
	uint8_t nodata;           /* meta, but its data-only layers have no data
				   * at its redirect: the errno an open gets (the
				   * kernel looks the data up at the first open) */
	bool syn;                 /* fd[1] stands for a synthetic directory of the
				   * mapping table (nothing in SOURCE; the table
				   * has names below): an empty placeholder */
	bool moved;               /* copied up (or its data) while a node: a
				   * descriptor opened just before may still be
				   * the lower one (under the node's shard lock) */
	uint16_t nopens, aopens;  /* opens (daemon fds) of a lower object; */
	int *opens;               /* under the node's shard lock            */
	uint32_t cached;          /* opens served by the daemon (no passthrough) */
	int sdir;                 /* where the table put the object of layer top */
	char *sname;              /* (owned), or -1/NULL: its parent's part of
				   * that layer, under its own name */
	struct pfs_lhandle *hs;   /* per layer, once the budget closed fd[]
				   * (node.c), or NULL; under the shard lock */
	int fd[];
};

/* The root's name in each layer: every layer's root, merged. The
 * descriptors stay the layers'. */
struct pfs_lnode *pfs_layer_root_ln(struct pfs_fs *fs);
struct pfs_lnode *pfs_lnode_new(struct pfs_layers *L);
/* Is n a directory merged from more than one layer? */
bool pfs_layer_merged(const struct pfs_node *n);
/* Free ln, closing its descriptors except `keep`. */
void pfs_lnode_free(struct pfs_layers *L, struct pfs_lnode *ln, int keep);

/* A merged directory as a lookup in it sees it. */
struct pfs_ldir {
	const struct pfs_lnode *ln;
	struct pfs_map *map;      /* the mapping table's generation (held), or NULL */
	char *vpath;              /* its virtual path (owned) when there is a table */
	uint64_t ctx;             /* its node's key: ctx, dev, ino */
	dev_t dev;
	ino_t ino;
	bool root;
};
/* The directory node n: 0 or -errno. */
int pfs_layer_ldir_get(struct pfs_fs *fs, struct pfs_node *n, struct pfs_ldir *d);
void pfs_layer_ldir_put(struct pfs_ldir *d);

/* What a name is in a merged directory. */
struct pfs_lfound {
	int layer;                /* layer of the object shown, -1: none */
	int fd;                   /* O_PATH on it (owned), or -1 */
	struct stat st;           /* its lstat */
	dev_t kdev;               /* the node key: stable across copy-up */
	ino_t kino;
	uint64_t ctx;             /* ... with the ctx the table gives the name */
	int sdir;                 /* owned: see pfs_lnode (layer 1, placed by */
	char *sname;              /* the table), or -1/NULL                  */
	struct pfs_lnode *ln;     /* owned, or NULL */
	bool upper_wh;            /* the upper holds a whiteout for the name */
	bool upper_wh_file;       /* ... as a `.wh.NAME` file */
	bool below;               /* a lower shows the name (removing it needs a whiteout) */
};
int pfs_layer_find(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		   struct pfs_lfound *f);
int pfs_layer_find_in(struct pfs_fs *fs, const struct pfs_ldir *d, const char *name,
		      struct pfs_lfound *f);
void pfs_lfound_put(struct pfs_fs *fs, struct pfs_lfound *f);
/* The inode number the view shows for a node key. */
ino_t pfs_layer_ino(struct pfs_fs *fs, dev_t kdev, ino_t kino);
/* Is name one of the layers' private attributes (hidden from the view)? */
bool pfs_layer_private_xattr(struct pfs_fs *fs, const char *name);

/* A private name as the view's program gave it, stored escaped
 * (trusted.overlay.X -> trusted.overlay.overlay.X). 0 or -ERANGE. */
int pfs_layer_escape_xattr(const char *name, char *buf, size_t len);
/* The name a stored attribute shows as, in buf: escaped ones unescaped,
 * others as they are; false for private ones (hidden). */
bool pfs_layer_unescape_xattr(struct pfs_fs *fs, const char *stored, char *buf, size_t len);

/* Read overlay.<key> (under the mount's prefix, then the other) of the
 * entry name in dirfd. Length or -errno. */
ssize_t pfs_layer_getx(struct pfs_fs *fs, int dirfd, const char *name, const char *key,
		       char *buf, size_t len);
int pfs_layer_setx(struct pfs_fs *fs, int dirfd, const char *name, const char *key,
		   const void *val, size_t len);

/* Record on the new upper object name in dirfd that it was copied from
 * inode ino (on dev) of layer `layer` (its number in the view stays that). */
int pfs_layer_set_origin(struct pfs_fs *fs, int dirfd, const char *name, int layer, dev_t dev,
			 ino_t ino);

/* List n's merged directory: cb for each visible name (with the inode
 * number a lookup gives it and its DT_ type), "." and ".." first. */
typedef int pfs_layer_list_cb(void *arg, const char *name, ino_t ino, unsigned char type);
int pfs_layer_list(struct pfs_fs *fs, struct pfs_node *n, pfs_layer_list_cb *cb, void *arg);
/* Does the directory f found at (parent, name) show any name? 1, 0, or
 * -errno. */
int pfs_layer_dir_nonempty(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
			   const struct pfs_lfound *f);

/* copyup.c: make n's object live in the upper (parents first), keeping its
 * metadata; with no_data (a truncating open), the data is not copied.
 * Takes L->lock. 0 or -errno. */
int pfs_layer_copy_up(struct pfs_fs *fs, struct pfs_node *n, bool no_data);
/* The same with L->lock held. */
int pfs_layer_copy_up_locked(struct pfs_fs *fs, struct pfs_node *n, bool no_data);
/* With metacopy=on, a regular file's metadata alone (overlay.metacopy, a
 * sparse upper file of the lower's size); else as pfs_layer_copy_up. */
int pfs_layer_copy_up_meta(struct pfs_fs *fs, struct pfs_node *n);
int pfs_layer_copy_up_meta_locked(struct pfs_fs *fs, struct pfs_node *n);
/* The copy-up a hard link makes, L->lock held: with metacopy=on, a regular
 * file's metadata alone with an absolute overlay.redirect to its data (as
 * the kernel's ovl_link), else as pfs_layer_copy_up_locked. */
int pfs_layer_copy_up_link_locked(struct pfs_fs *fs, struct pfs_node *n);
/* A metacopy file's data into its upper file (none with no_data: it is
 * about to be truncated), then overlay.metacopy removed. Takes L->lock. */
int pfs_layer_copy_data_up(struct pfs_fs *fs, struct pfs_node *n, bool no_data);
/* A fresh name for a temporary in the work directory (L->lock held). */
void pfs_layer_tmpname(struct pfs_layers *L, char buf[32]);
/* Put a whiteout for name in the upper directory dirfd, replacing what
 * the upper holds there (the replaced object must be a whiteout-only
 * directory or a non-directory). 0 or -errno. */
int pfs_layer_whiteout(struct pfs_fs *fs, int dirfd, const char *name);
/* Remove the whiteouts (and markers) in the upper directory dirfd. */
int pfs_layer_clear_whiteouts(struct pfs_fs *fs, int dirfd);
/* Mark the directory name in dirfd opaque. */
int pfs_layer_set_opaque(struct pfs_fs *fs, int dirfd, const char *name);

/* n's first name: the directory of n's own layer that holds it. */
int pfs_layer_node_name(struct pfs_fs *fs, struct pfs_node *n, int *dirfd, char *name,
			size_t len);

/* layerops.c: the view's operations on a layered mount. */
int pfs_layer_lookup(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		     struct fuse_entry_param *e);
/* Make name in parent: a directory, symlink (target), node (rdev), or
 * with fdp an open regular file (open_flags; the fd in *fdp). */
int pfs_layer_make(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		   const char *name, mode_t mode, dev_t rdev, const char *target,
		   int open_flags, int *fdp, struct fuse_entry_param *e);
int pfs_layer_link(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node *newparent,
		   const char *newname, struct fuse_entry_param *e);
int pfs_layer_remove(struct pfs_fs *fs, struct pfs_node *parent, const char *name, bool dir);
int pfs_layer_rename(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		     struct pfs_node *newparent, const char *newname, unsigned int flags);
/* Before a change to n's data or metadata: copy it up. For an open with
 * flags; -ESTALE when the kernel must look the name up again. */
int pfs_layer_prepare_change(struct pfs_fs *fs, struct pfs_node *n, int open_flags);

#endif
