/* view: the virtual namespace the mount shows, and the operations on it.
 * Every FUSE handler in ops.c is a thin wrapper around one function here.
 * Functions return 0 (or a byte count) or a negative errno. */
#ifndef PFS_VIEW_H
#define PFS_VIEW_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "map/mapping.h"
#include "store/past.h"
#include "store/store.h"
#include "util/idmap.h"

struct pfs_config;
struct pfs_oplog;
struct pfs_nodes;
struct pfs_dirh;
struct pfs_mapwatch;
struct pfs_inval;
struct pfs_layers;
struct pfs_lnode;
struct pfs_xport;
struct pfs_ns_ops;

/* One name a node is known by: hard links give a node several. */
struct pfs_alias {
	struct pfs_alias *next;
	struct pfs_node *parent; /* holds a ref on it */
	char name[];
};

/* A name the kernel holds. Keyed by the backing object's (dev, ino) so hard
 * links share a node (and so st_ino, st_nlink stay truthful); the node keeps
 * an O_PATH fd so it stays reachable whatever happens to its names. */
struct pfs_node {
	struct pfs_node *hnext;  /* hash chain, under the shard lock */
	dev_t dev;               /* 0 for a synthetic directory (a virtual parent */
	ino_t ino;               /* of mapped paths, with nothing behind it)     */
	uint64_t ctx;            /* 0: reached without the mapping table; else the
				  * hash of the entry (key and target) that placed
				  * it. Part of the key: one backing directory
				  * grafted at two places is two directories. */
	int bfd;                 /* O_PATH | O_NOFOLLOW on the backing object, or
				  * -1 while closed to stay in the fd budget;
				  * read it only through pfs_node_fd() */
	mode_t type;             /* S_IFMT bits */
	uint64_t nlookup;        /* kernel references, under the shard lock */
	uint32_t refs;           /* aliases naming us as parent, under the shard lock */
	int backing_id;          /* kernel passthrough id while opens are live, */
	uint32_t backing_refs;   /* counted; both under the shard lock        */
	uint32_t backing_closing; /* of those, closed (FLUSH came) and not yet
				   * released: RELEASE follows close(2) late;
				   * shard lock */
	uint32_t daemon_opens;   /* opens served by the daemon because the store
				  * wants to see their writes, and every open
				  * while one is (the kernel takes no passthrough
				  * open of an inode open otherwise); shard lock */
	uint32_t writers;        /* opens that may change the object unseen by
				  * a kernel inode of it, plus one while it
				  * lingers (file.c); changed under the shard
				  * lock, read atomically */
	bool lingering;          /* a writer's open is released but a mapping
				  * made from it may still write */
	bool backing_stale;      /* the backing id is an object the node has left
				  * (copied up): new opens must not share it */
	bool fd_fixed;           /* bfd is never closed early (root, synthetic,
				  * placed by the table in a layered mount,
				  * or no usable file handle) */
	bool fd_used;            /* used since the budget sweep last came by */
	uint32_t pins;           /* requests using bfd now, plus open files;
				  * under the shard lock */
	struct file_handle *handle; /* to reopen bfd once closed, or NULL */
	struct pfs_lnode *ln;    /* copy-on-write layers: the name in each layer */
	struct pfs_alias *alias; /* known names, first = the one shown; under
				  * fs->names_lock. The last name is kept even
				  * once unlinked, to name an open deleted file. */
};

/* What the view may ask of the kernel outside a request's reply. The
 * transport registers this table at mount (fuse/backing.c); the view calls
 * through it and never a function of the transport. Why a table and not
 * struct pfs_req: a backing id is shared by every open of a node and
 * closed at the last RELEASE, under the node's shard lock (node_open.c),
 * and invalidations are sent from the view's own thread (inval.c), not
 * from a request. */
struct pfs_kernel {
	/* Register fd (open) as a kernel passthrough backing file: its id, or
	 * -errno. Close: the last open using the id is gone. */
	int (*backing_open)(void *ctx, int fd);
	void (*backing_close)(void *ctx, int backing_id);
	/* Make the kernel forget name in the directory parent. */
	void (*inval_entry)(void *ctx, fuse_ino_t parent, const char *name, size_t namelen);
	/* ... what it caches of ino: off < 0: only its attributes (takes no
	 * lock, so safe inside a request); 0: its attributes and data. */
	void (*inval_inode)(void *ctx, fuse_ino_t ino, off_t off, off_t len);
};

struct pfs_fs {
	const struct pfs_config *cfg;
	const struct pfs_kernel *kernel; /* set at mount by the transport, else NULL */
	void *kernel_ctx;                /* its first argument */
	struct pfs_store *store;  /* every backing object is reached through it */
	struct pfs_store *cache;  /* the memory cache (--mirror), also when the
				   * history wraps it (store is then the history's);
				   * NULL: none */
	char *source;            /* canonical absolute paths */
	char *mountpoint;
	int root_fd;             /* O_PATH on SOURCE, opened before mounting */
	int proc_fd;             /* /proc/self/fd, to reopen O_PATH fds */
	int cover_fd;            /* O_PATH on the mount point's directory, opened
				  * before mounting (selfmnt.h), or -1 */
	char *cover_name;        /* ... its name in its parent, and the parent */
	dev_t cover_pdev;
	ino_t cover_pino;
	struct pfs_node *root;
	struct pfs_nodes *nodes;
	pthread_rwlock_t names_lock;
	double timeout;
	bool read_only;
	bool keep_cache;
	bool acl;                /* the kernel checks POSIX ACLs (FUSE_POSIX_ACL) */
	bool keep_dir_cache;     /* let the kernel keep listings (no mapping table) */
	bool stateless_dirs;     /* no directory handles: OPENDIR answers ENOSYS */
	struct pfs_mlists *mlists; /* merged listings kept between READDIRs
				    * (readdir_merged.c), or NULL */
	/* Mapping table: swapped whole under map_lock; each call holds one
	 * generation by reference for as long as it resolves names. */
	pthread_mutex_t map_lock;
	struct pfs_map *map;
	struct pfs_mapwatch *watch;
	struct pfs_inval *inval;
	struct pfs_layers *layers; /* copy-on-write layers (layer.h), or NULL */
	const struct pfs_ns_ops *ns; /* plain or layered namespace (ns.h): chosen
				      * once, when the layers are open */
	const struct pfs_past *past; /* the tree at each snapshot (store/past.h),
				      * shown under past_name at the root; or NULL */
	const char *past_name;
	uint64_t past_changed_ns; /* atomic: when the snapshots last changed
				   * (past_name's mtime) */
	uint64_t past_ino;       /* atomic: the kernel's id of past_name, or 0 */
	/* The last mapping table a snapshot was browsed through (past.table's
	 * id and the parsed table), under past_map_lock: a table recorded
	 * once never changes, so it is parsed once while asked in a row. */
	pthread_mutex_t past_map_lock;
	long long past_map_id;
	struct pfs_map *past_map;
	int empty_fd;            /* O_PATH on a removed empty directory: what a
				  * synthetic directory's node holds */
	struct timespec started; /* times shown on synthetic directories */
	uid_t uid;               /* the daemon's own ids */
	gid_t gid;
	bool squash_uid, squash_gid; /* pfs_fs_opts: owners shown as one id */
	uid_t squash_uid_to;
	gid_t squash_gid_to;
	/* pfs_fs_opts: fuse-overlayfs's uidmapping=/gidmapping= (util/idmap.h),
	 * or NULL; a stored id no range holds is shown as the overflow id. */
	const struct pfs_idmap *uidmap, *gidmap;
	uid_t overflow_uid;
	gid_t overflow_gid;
	struct pfs_oplog *log;   /* NULL: no op log */
	pthread_mutex_t dirs_lock; /* open directory handles, to free those the */
	struct pfs_dirh *dirs;     /* kernel never released (session ended)    */
	struct pfs_xport *xport; /* the transport's own state (fuse/xport.h),
				  * owned by it; the view never looks inside */
	bool passthrough;        /* regular files' opens may use kernel
				  * passthrough (set by the transport at INIT) */
	unsigned long files_open;   /* file handles not yet released (atomic) */
	unsigned long writers;      /* opens counted in some node's writers (atomic) */
	struct pfs_nodefd *nfd;  /* the budget of node fds (nodefd.c) */
};

/* fs.c: struct pfs_fs's owner. What of the configuration the view uses. */
struct pfs_fs_opts {
	bool read_only;
	double timeout;          /* attribute and entry timeout, seconds */
	bool volatile_source;    /* the source changes behind the mount */
	bool mapped;             /* a mapping table */
	bool layered;            /* copy-on-write layers */
	bool logged;             /* an op log (records directory opens) */
	bool acl;                /* ask the kernel to check POSIX ACLs: only with
				  * default_permissions, which FUSE_POSIX_ACL implies */
	long long squash_uid;    /* >= 0: every owner shown as that id, */
	long long squash_gid;    /* every group as that id (fuse-overlayfs's
				  * squash_to_root, squash_to_uid=, _gid=) */
	const struct pfs_idmap *idmap; /* NULL, or [0] uidmapping=, [1] gidmapping=
					* (n 0: not given), the caller's for the
					* mount's life */
};
/* Before anything is opened: zeroes fs, then locks, times, ids, options. */
void pfs_fs_init(struct pfs_fs *fs, const struct pfs_fs_opts *o);
/* After the session: what the view holds (directory handles, nodes and
 * their fds, the mapping table and its watcher, the layers, the root fd
 * last). The caller's own (store, op log, source and mount point names)
 * stay for the unmount action. */
void pfs_fs_fini(struct pfs_fs *fs);

/* What one request brings down from the transport and takes back up. The
 * handler (fuse/ops.c) fills the first part from the kernel's request,
 * passes it to the view, and acts on the rest once the view returns (it
 * gives the reply its backing id): the view never calls the transport. */
struct pfs_req {
	bool killpriv;      /* the daemon clears set-ID bits on write, truncate
			     * and chown (FUSE_HANDLE_KILLPRIV_V2 agreed at INIT) */
	bool kill_suidgid;  /* ... and this request asks for it: the caller
			     * lacks CAP_FSETID (WRITE, OPEN/CREATE with O_TRUNC,
			     * SETATTR of size or owner) */
	int backing_id;     /* out, OPEN/CREATE: the kernel passthrough backing
			     * id the reply carries, or 0 */
};

/* fi->fh: the backing fd in the low 32 bits; bit 32 = opened with passthrough. */
#define PFS_FH_PASSTHROUGH (1ULL << 32)
#define PFS_FH_TRACKED (1ULL << 33) /* layered: counted in the node's opens */
#define PFS_FH_PINNED (1ULL << 34)  /* holds a pin on its node's fd */
#define PFS_FH_WRITER (1ULL << 35)  /* counted in its node's writers */
#define PFS_FH_DAEMON (1ULL << 36)  /* counted in its node's daemon_opens */
static inline int pfs_fh_fd(const struct fuse_file_info *fi)
{
	return (int)(uint32_t)fi->fh;
}

static inline struct pfs_node *pfs_node_of(struct pfs_fs *fs, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? fs->root : (struct pfs_node *)(uintptr_t)ino;
}

static inline fuse_ino_t pfs_ino_of(struct pfs_fs *fs, struct pfs_node *n)
{
	return n == fs->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

/* node.c */
int pfs_nodes_init(struct pfs_fs *fs, int root_fd);
void pfs_nodes_destroy(struct pfs_fs *fs);
/* Find or add the node for (st's dev and ino, ctx) whose backing object fd
 * is (O_PATH, stat'ed as st), count one kernel lookup. Takes ownership of fd. */
int pfs_node_intern(struct pfs_fs *fs, struct pfs_node *parent, const char *name, int fd,
		    const struct stat *st, uint64_t ctx, struct pfs_node **out);
/* The same for a layered mount: fd is ln's top descriptor, and ln (owned)
 * is attached to a new node (*made true) or freed if the node exists. */
int pfs_node_intern_ln(struct pfs_fs *fs, struct pfs_node *parent, const char *name, int fd,
		       const struct stat *st, uint64_t ctx, struct pfs_lnode *ln,
		       struct pfs_node **out, bool *made);
/* n no longer answers lookups of its key: the next lookup makes a new node
 * (and the kernel a new inode). n lives on for the kernel's references. */
void pfs_node_retire(struct pfs_fs *fs, struct pfs_node *n);
void pfs_node_forget(struct pfs_fs *fs, struct pfs_node *n, uint64_t nlookup);
/* The object (dev, ino, ctx) was renamed from (parent, name) to (np, nn). */
void pfs_node_renamed(struct pfs_fs *fs, dev_t dev, ino_t ino, uint64_t ctx,
		      struct pfs_node *parent, const char *name, struct pfs_node *np,
		      const char *nn);
/* The object (dev, ino, ctx) lost its name (parent, name). */
void pfs_node_unlinked(struct pfs_fs *fs, dev_t dev, ino_t ino, uint64_t ctx,
		       struct pfs_node *parent, const char *name);
/* The node for (dev, ino, ctx) if the kernel holds it, held against a
 * concurrent forget until pfs_node_release(). */
struct pfs_node *pfs_node_find(struct pfs_fs *fs, dev_t dev, ino_t ino, uint64_t ctx);
void pfs_node_release(struct pfs_fs *fs, struct pfs_node *n);
/* Hold n (as pfs_node_find does) until pfs_node_release. */
void pfs_node_hold(struct pfs_fs *fs, struct pfs_node *n);
/* n (layered) now lives in the upper at fd: n's descriptor follows it.
 * When the kernel's inode has the old object open as its passthrough
 * backing, n is retired (true): the kernel must look the name up again. */
bool pfs_node_moved_up(struct pfs_fs *fs, struct pfs_node *n, int fd);
/* A metacopy node's data is now its upper object's (ln->meta cleared):
 * the opens reading the lower one move to it. True when n was retired, as
 * by pfs_node_moved_up (its lower data is a kernel passthrough backing). */
bool pfs_node_data_up(struct pfs_fs *fs, struct pfs_node *n);
/* Layered: an open of n served by the daemon (fd). An open of a lower
 * object is remembered, so a copy-up can move it to the upper copy as
 * overlayfs moves its open files: -EAGAIN if n moved up meanwhile (open
 * again). Any such open keeps later opens of n off passthrough (the
 * kernel takes no passthrough open of an inode with cached opens). */
int pfs_node_open_track(struct pfs_fs *fs, struct pfs_node *n, int fd, bool lower);
void pfs_node_open_untrack(struct pfs_fs *fs, struct pfs_node *n, int fd);
bool pfs_node_has_cached_opens(struct pfs_fs *fs, struct pfs_node *n);
/* Other nodes of n's backing object (other ctx), held; at most max. */
size_t pfs_node_siblings(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node **out,
			 size_t max);
/* Every node of the object (dev, ino), whatever its ctx, held; at most max. */
size_t pfs_node_all(struct pfs_fs *fs, dev_t dev, ino_t ino, struct pfs_node **out, size_t max);
/* Is (parent, name) one of the names n was looked up by? */
bool pfs_node_known_as(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node *parent,
		       const char *name);

/* inval.c (view): the kernel's caches of one backing object seen at several places
 * (grafts) are dropped by a thread of their own, never from inside the
 * request that changed it (that could deadlock on the kernel's locks). */
int pfs_inval_start(struct pfs_fs *fs);
void pfs_inval_stop(struct pfs_fs *fs);
/* Make the kernel forget (parent, name), from the invalidation thread. */
/* ns_history.c: show fs->past's new or pruned snapshots at once (the
 * kernel keeps past_name's attributes and listing until told). */
void pfs_view_past_watch(struct pfs_fs *fs);
/* ns_history.c: keep fs->map (the table shown from now on) with fs->past,
 * so that each snapshot is browsed through the table it was taken under.
 * Called when the mount starts and at each reload; nothing without a
 * past. */
void pfs_view_past_table(struct pfs_fs *fs);
uint64_t pfs_inval_entry(struct pfs_fs *fs, struct pfs_node *parent, const char *name);
/* Make the kernel forget the attributes it holds of n's other places (and
 * of n itself if self), at once: safe inside a request. */
void pfs_inval_attrs(struct pfs_fs *fs, struct pfs_node *n, bool self);
/* Something changed in n (name: that name in the directory n; NULL: n's
 * attributes or data): make the kernel forget it at n's other places. */
void pfs_view_changed(struct pfs_fs *fs, struct pfs_node *n, const char *name);
/* The first known name of n: fills *parent_fd and name. 0 or -ENOENT. */
int pfs_node_name(struct pfs_fs *fs, struct pfs_node *n, int *parent_fd, char *name,
		  size_t len);
/* Virtual path of n (plus "/name" if name): malloc'd, or NULL. */
char *pfs_node_path(struct pfs_fs *fs, struct pfs_node *n, const char *name);
size_t pfs_nodes_count(struct pfs_fs *fs);
/* The kernel's attributes of every directory marked stale (prismfs sync). */
void pfs_nodes_stale_dirs(struct pfs_fs *fs);
/* After the kernel forgot many nodes, give their memory back to the system. */
void pfs_nodes_maybe_trim(struct pfs_fs *fs, size_t forgotten);
/* n's O_PATH fd (or -errno: it was closed to stay in the fd budget and its
 * object is gone). Valid until the calling request ends: it is pinned
 * until pfs_node_request_done(). Only on worker threads. */
int pfs_node_fd(struct pfs_fs *fs, struct pfs_node *n);
/* The request on this thread is over: unpin what it used, then close the
 * least recently used node fds if over budget. */
void pfs_node_request_done(struct pfs_fs *fs);
/* An open file keeps its node's fd (the object may have no name left). */
void pfs_node_pin(struct pfs_fs *fs, struct pfs_node *n);
void pfs_node_unpin(struct pfs_fs *fs, struct pfs_node *n);
/* Share one passthrough backing id per node among its live opens. */
int pfs_node_backing_get(struct pfs_fs *fs, struct pfs_node *n, int fd);
/* As pfs_node_backing_get, unless no passthrough open of n is live and
 * either daemon is true or another open is served by the daemon so: then
 * the open is counted in n->daemon_opens and PFS_BACKING_DAEMON returned. */
#define PFS_BACKING_DAEMON (-EUSERS)
/* -EAGAIN from either: fd was opened from a layered node's lower object
 * that a copy-up has replaced since; open the copy instead. */
int pfs_node_backing_get_or_daemon(struct pfs_fs *fs, struct pfs_node *n, int fd, bool daemon);
void pfs_node_daemon_put(struct pfs_fs *fs, struct pfs_node *n);
void pfs_node_backing_put(struct pfs_fs *fs, struct pfs_node *n);
/* A passthrough open of n was closed (FLUSH): its RELEASE is to come. */
void pfs_node_backing_closing(struct pfs_fs *fs, struct pfs_node *n);
/* Count an open of n that may change it unseen by a kernel inode of it
 * (by kernel passthrough, or at one of several places), until its RELEASE;
 * put with linger: n stays counted (lingering) if it was the last. Put
 * returns true when n is no longer written at all. */
void pfs_node_writer_get(struct pfs_fs *fs, struct pfs_node *n);
bool pfs_node_writer_put(struct pfs_fs *fs, struct pfs_node *n, bool linger);
/* n lingers and its backing file is no longer open for writing: counted no
 * more. True when n is no longer written at all. */
bool pfs_node_settle(struct pfs_fs *fs, struct pfs_node *n);
/* Is n's object (at any of its places) open by such a writer? Then its
 * attributes are not to be cached. */
bool pfs_node_writing(struct pfs_fs *fs, struct pfs_node *n);

/* resolve.c (attr.c, mapload.c): where a name of the view lives. Without a mapping table a
 * name is its parent's backing directory plus the same name; with one, the
 * table may put it elsewhere, hide it, or make it a synthetic directory. */
struct pfs_place {
	struct pfs_map *map;     /* the generation used (held), or NULL */
	char *vpath;             /* virtual path of the name; NULL without a table */
	struct pfs_map_res res;
	int dirfd;               /* directory holding the backing name; -1: none
				  * (a missing or synthetic parent) */
	int own_fd;              /* dirfd when this place opened it, else -1 */
	const char *name;        /* backing name in dirfd */
	uint64_t ctx;            /* node ctx for the object found there */
	char *tbuf;              /* owned storage behind name, or NULL */
	int unreach;             /* -EXDEV: the table's way there leads out of
				  * SOURCE (dirfd -1: nothing there), else 0 */
};
struct pfs_map *pfs_view_map(struct pfs_fs *fs); /* held generation or NULL */
int pfs_place_get(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		  struct pfs_place *pl);
/* The place of the name at vpath (malloc'd; pl owns it from now on, even
 * on failure) in a tree where the parent's own children live in pdir (-1:
 * none, so the table says where they are); proot: the parent is the root;
 * pctx: the parent's ctx. m (not NULL) is held by pl. What a layered
 * mount's source layer shows at a name (layermap.c). */
int pfs_place_at(struct pfs_fs *fs, struct pfs_map *m, char *vpath, int pdir, bool proot,
		 uint64_t pctx, struct pfs_place *pl);
void pfs_place_put(struct pfs_place *pl);
/* The ctx of the node for an object of type mode found at pl. */
uint64_t pfs_place_node_ctx(const struct pfs_place *pl, mode_t mode);
/* Can a change in parent reach the target of the mapped name at pl (in
 * parent): does its target pass through parent's own directory, or is
 * another mapped name in parent mapped to it (or to a directory above it)?
 * Such a change is made while the kernel holds parent locked, so the
 * mapped name could only be forgotten once the change is answered: the
 * kernel must not cache that name. */
bool pfs_place_near_target(struct pfs_fs *fs, struct pfs_node *parent,
			   const struct pfs_place *pl);
/* The errno for making a name at pl (hidden: EACCES; read-only: EROFS), or 0. */
int pfs_place_creatable(struct pfs_fs *fs, const struct pfs_place *pl);
/* ... for removing or renaming the name at pl, or 0. */
int pfs_place_removable(struct pfs_fs *fs, const struct pfs_place *pl, bool is_dir);
/* May n be changed (read-only view, mapping's readonly)? 0 or -EROFS. */
int pfs_view_writable(struct pfs_fs *fs, struct pfs_node *n);
/* Attributes as the view shows them: synthetic directories, the mapping's
 * mode/uid/gid, inode numbers of other filesystems kept apart; then the
 * owners through uidmapping=/gidmapping=, then squash_to_*. */
void pfs_view_fix_attr(struct pfs_fs *fs, struct pfs_node *n, struct stat *st);
/* The ids to store for ids given through the mount (chown's, a creator's),
 * in place; (uid_t)-1 and (gid_t)-1 ("unchanged") stay. false when
 * uidmapping=/gidmapping= hold one of them in no range (nothing changed). */
bool pfs_view_ids_stored(const struct pfs_fs *fs, uid_t *uid, gid_t *gid);
/* 0 if what the caller of ctx (NULL: the daemon) makes can be given its
 * ids, else -EOVERFLOW: uidmapping=/gidmapping= hold one in no range (the
 * kernel's answer to a creator an idmapped mount does not map). */
int pfs_view_creator_mapped(const struct pfs_fs *fs, const struct fuse_ctx *ctx);
double pfs_view_attr_timeout(struct pfs_fs *fs, struct pfs_node *n);
/* Is n's backing object also another node (grafted elsewhere)? */
bool pfs_view_aliased(struct pfs_fs *fs, struct pfs_node *n);
/* The inode number shown for st reached through an entry with ctx. */
ino_t pfs_view_ino(struct pfs_fs *fs, uint64_t ctx, const struct stat *st);
/* The mapping fixes n's mode (FUSE_SET_ATTR_MODE) or owner: -EPERM, else 0. */
int pfs_view_attr_fixed(struct pfs_fs *fs, struct pfs_node *n, int valid);
/* An fd to list n's backing directory (O_RDONLY|O_DIRECTORY), or -errno. */
int pfs_view_open_dir(struct pfs_fs *fs, struct pfs_node *n);
/* An fd on the directory a key "/" with a target makes the root, or -ENOENT
 * (no such key, or a missing target), or the target's -errno (EXDEV: it
 * leads out of SOURCE). */
int pfs_view_root_target(struct pfs_fs *fs, int flags);
/* Has the table a key "/" with a target (the root is that directory)? */
bool pfs_view_root_keyed(struct pfs_fs *fs);
/* Attributes of the synthetic directory at vpath; returns the fd its node
 * holds (owned) or -errno. */
int pfs_view_synthetic(struct pfs_fs *fs, const char *vpath, struct stat *st);
/* The inode number of the synthetic directory at vpath (stable). */
ino_t pfs_view_synthetic_ino(const char *vpath);
/* The attributes of a synthetic directory (a virtual parent of mapped
 * paths with nothing behind it): perm, the daemon's ids, the start time. */
void pfs_view_synthetic_stat(struct pfs_fs *fs, ino_t ino, mode_t perm, struct stat *st);
/* A request made or removed (parent, name): the kernel forgets every mapped
 * name whose target that may have replaced. Returns the last invalidation
 * queued, or 0. */
uint64_t pfs_view_targets_changed(struct pfs_fs *fs, struct pfs_node *parent, const char *name);
/* Apply a new table (NULL: empty); the kernel forgets every name it changes. */
void pfs_view_set_map(struct pfs_fs *fs, struct pfs_map *map);

static inline bool pfs_node_synthetic(const struct pfs_node *n)
{
	return n->dev == 0;
}

/* backing.c: a node's backing object, through fs->store. */
/* Open n's object anew (flags as open(2); never creates), or -errno. */
int pfs_backing_reopen(struct pfs_fs *fs, struct pfs_node *n, int flags);
/* The name of fd in /proc/self/fd (fs->proc_fd). */
void pfs_backing_procname(int fd, char buf[24]);
int pfs_backing_stat(struct pfs_fs *fs, struct pfs_node *n, struct stat *st);
/* Is n's backing file open for writing anywhere (any process, or a mapping
 * the kernel keeps)? true also when it cannot tell. */
bool pfs_backing_written(struct pfs_fs *fs, struct pfs_node *n);
/* The new object name in dirfd, to be moved into parentfd (or made there:
 * dirfd == parentfd), as if the caller of ctx (NULL: the daemon) made it. */
int pfs_backing_give(struct pfs_fs *fs, const struct fuse_ctx *ctx, int parentfd, int dirfd,
		     const char *name, mode_t mode);
/* The names layers/layerops.c still calls, until it is converted too. */
static inline int pfs_store_stat(struct pfs_fs *fs, struct pfs_node *n, struct stat *st)
{
	return pfs_backing_stat(fs, n, st);
}
static inline void pfs_store_procname(int fd, char buf[24])
{
	pfs_backing_procname(fd, buf);
}
static inline int pfs_store_give(struct pfs_fs *fs, const struct fuse_ctx *ctx, int parentfd,
				 int dirfd, const char *name, mode_t mode)
{
	return pfs_backing_give(fs, ctx, parentfd, dirfd, name, mode);
}

/* acl.c: a directory's default POSIX ACL and new objects (the kernel's
 * posix_acl_create()). The mode to make a new object with in the store's
 * directory dirfd for the caller of ctx (NULL: the daemon, as given): the
 * caller's umask applied unless dirfd has a default ACL, which then
 * decides, masked by the mode, when the store makes the object there. */
mode_t pfs_view_new_mode(struct pfs_fs *fs, const struct fuse_ctx *ctx, int dirfd, mode_t mode);
/* The object name in dirfd, made elsewhere than its parent parentfd (to be
 * moved there): what parentfd's default ACL, if any, would have given it
 * had it been made there (access ACL and mode; a directory's default ACL). */
int pfs_view_acl_inherit(struct pfs_fs *fs, int parentfd, int dirfd, const char *name);

/* dir.c: names */
int pfs_view_lookup(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		    struct fuse_entry_param *e);
int pfs_view_getattr(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi,
		     struct stat *st);
int pfs_view_setattr(struct pfs_fs *fs, struct pfs_req *rq, const struct fuse_ctx *ctx,
		     struct pfs_node *n, struct stat *attr, int valid,
		     struct fuse_file_info *fi, struct stat *out);
int pfs_view_readlink(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size);
int pfs_view_mknod(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		   const char *name, mode_t mode, dev_t rdev, struct fuse_entry_param *e);
int pfs_view_mkdir(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		   const char *name, mode_t mode, struct fuse_entry_param *e);
int pfs_view_symlink(struct pfs_fs *fs, const struct fuse_ctx *ctx, const char *target,
		     struct pfs_node *parent, const char *name, struct fuse_entry_param *e);
int pfs_view_link(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node *newparent,
		  const char *newname, struct fuse_entry_param *e);
int pfs_view_unlink(struct pfs_fs *fs, struct pfs_node *parent, const char *name);
int pfs_view_rmdir(struct pfs_fs *fs, struct pfs_node *parent, const char *name);
int pfs_view_rename(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		    struct pfs_node *newparent, const char *newname, unsigned int flags);
int pfs_view_statfs(struct pfs_fs *fs, struct pfs_node *n, struct statvfs *st);
int pfs_view_access(struct pfs_fs *fs, struct pfs_node *n, int mask);

/* file.c: open files */
int pfs_view_open(struct pfs_fs *fs, struct pfs_req *rq, struct pfs_node *n,
		  struct fuse_file_info *fi);
int pfs_view_create(struct pfs_fs *fs, struct pfs_req *rq, const struct fuse_ctx *ctx,
		    struct pfs_node *parent, const char *name, mode_t mode,
		    struct fuse_file_info *fi, struct fuse_entry_param *e);
int pfs_view_release(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi);
int pfs_view_flush(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi);
int pfs_view_fsync(struct pfs_fs *fs, int datasync, struct fuse_file_info *fi);
int pfs_view_fallocate(struct pfs_fs *fs, int mode, off_t off, off_t len,
		       struct fuse_file_info *fi);
ssize_t pfs_view_copy_file_range(struct pfs_fs *fs, struct fuse_file_info *fi_in, off_t off_in,
				 struct fuse_file_info *fi_out, off_t off_out, size_t len,
				 int flags);
void pfs_view_read_buf(struct pfs_fs *fs, struct fuse_file_info *fi, size_t size, off_t off,
		       struct fuse_bufvec *out);
ssize_t pfs_view_read(struct pfs_fs *fs, struct fuse_file_info *fi, char *buf, size_t size,
		      off_t off);
/* Must n's attributes be given uncached (a writer the kernel may not hear
 * of has it open, or had it: see file.c)? Only on worker threads. */
bool pfs_view_writing(struct pfs_fs *fs, struct pfs_node *n);
/* After the answer to the RELEASE of a writer's open of n (held): is a
 * mapping of it left? If not, its attributes may be cached again. */
void pfs_view_settle(struct pfs_fs *fs, struct pfs_node *n);
/* Clear the set-ID bits an unprivileged write, truncate or chown clears;
 * fd is an open file, or an O_PATH one when opath. 0 or -errno. */
int pfs_view_kill_suidgid(struct pfs_fs *fs, int fd, bool opath);
ssize_t pfs_view_write(struct pfs_fs *fs, struct pfs_req *rq, struct fuse_file_info *fi,
		       struct fuse_bufvec *in, off_t off);
off_t pfs_view_lseek(struct pfs_fs *fs, off_t off, int whence, struct fuse_file_info *fi);

/* readdir.c: listings */
int pfs_view_opendir(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi);
/* Fill buf with entries from off; returns bytes used or -errno. */
ssize_t pfs_view_readdir(struct pfs_fs *fs, fuse_req_t req, struct pfs_node *n, char *buf,
			 size_t size, off_t off, struct fuse_file_info *fi, bool plus);
int pfs_view_releasedir(struct pfs_fs *fs, struct fuse_file_info *fi);
int pfs_view_fsyncdir(struct pfs_fs *fs, struct pfs_node *n, int datasync,
		      struct fuse_file_info *fi);
/* Free every directory handle still open once the session has ended. */
void pfs_view_close_dirs(struct pfs_fs *fs);

/* xattr.c */
ssize_t pfs_view_getxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name, char *buf,
			  size_t size);
ssize_t pfs_view_listxattr(struct pfs_fs *fs, struct pfs_node *n, char *buf, size_t size);
/* Who sets an access ACL, for what the daemon must do in the caller's
 * stead: the set-group-ID bit goes unless the caller is in the file's
 * group or has CAP_FSETID (posix_acl_update_mode(), as native filesystems
 * apply it; the daemon sets ACLs with its own capabilities, and the
 * kernel's FUSE_SETXATTR_ACL_KILL_SGID does not reach libfuse's
 * setxattr). */
struct pfs_acl_caller {
	uid_t uid;            /* the request's (fs) ids and thread: whether it */
	gid_t gid;            /* holds CAP_FSETID is asked only when it is not */
	pid_t pid;            /* in the group (store/caller.h) */
	const gid_t *groups;  /* the primary group and the supplementary ones */
	int ngroups;          /* 0: too many to know (taken to be in the group) */
};
/* who: NULL but for system.posix_acl_access set through the mount. */
int pfs_view_setxattr(struct pfs_fs *fs, struct pfs_node *n, const char *name,
		      const char *value, size_t size, int flags,
		      const struct pfs_acl_caller *who);
int pfs_view_removexattr(struct pfs_fs *fs, struct pfs_node *n, const char *name);

/* ops.c */
extern const struct fuse_lowlevel_ops pfs_ops;

#endif
