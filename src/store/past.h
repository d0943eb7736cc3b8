/* past: the tree as it was at each snapshot, as a store that keeps a
 * history answers it (history/history_browse.c) and the view shows it
 * (view/ns_history.c, the .history directory). A table, so that the view
 * needs nothing of history/ and history nothing of view/. Paths are
 * relative to the tree's root ("" the root), as the journal names them. */
#ifndef PFS_PAST_H
#define PFS_PAST_H

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

/* What a path was at a snapshot: its attributes then. */
struct pfs_past_obj {
	mode_t mode;
	uid_t uid;
	gid_t gid;
	off_t size;
	nlink_t nlink;
	dev_t rdev; /* a device's number, a saved version's too (0 for one
		     * saved before versions kept it; a layer's whiteout is the
		     * 0/0 character device) */
	struct timespec mtime, ctime;
};

typedef int pfs_past_name_cb(void *arg, const char *name, mode_t type);

struct pfs_past {
	void *ctx;
	/* Each snapshot's name, oldest first. 0 or -errno (cb's too). */
	int (*snapshots)(void *ctx, pfs_past_name_cb *cb, void *arg);
	/* path at snap: 0, -ENOENT (no such snapshot, or no such path then),
	 * or -errno. */
	int (*stat)(void *ctx, const char *snap, const char *path, struct pfs_past_obj *o);
	/* The names of directory dir at snap (no "." or ".."), in no order. */
	int (*list)(void *ctx, const char *snap, const char *dir, pfs_past_name_cb *cb, void *arg);
	/* A descriptor (O_RDONLY) on the content of the file path had at
	 * snap; for a symlink, its target. -errno (-EIO: its saved version
	 * was pruned). */
	int (*open)(void *ctx, const char *snap, const char *path);
	/* The mapping table the view showed the tree through at snap, as the
	 * text set_table gave: 0 with *json malloc'ed (NULL: none was ever
	 * set, or "" none then) and *id the same for the same text, or -errno
	 * (-ENOENT: no such snapshot). Paths given to stat, list and open are
	 * the tree's own (SOURCE's); the view translates through this. */
	int (*table)(void *ctx, const char *snap, long long *id, char **json);
	/* The table the view shows from now on ("" none): kept with the
	 * history, ordered with its changes. 0 or -errno. */
	int (*set_table)(void *ctx, const char *json);
	/* Extended attribute name of what path was at snap, into buf (size
	 * 0: its length only): its length, -ENODATA (none), -ERANGE, or
	 * -errno. user.* ones as they were (kept with a saved version; an
	 * object unchanged since: its own); others as the live object has
	 * them now (a layered mount's past reads a directory's
	 * overlay.opaque with it). */
	ssize_t (*getxattr)(void *ctx, const char *snap, const char *path, const char *name,
			    char *buf, size_t size);
	/* Its user.* names as listxattr(2) gives them (size 0: their length).
	 * NULL: none are known (a layered mount's). */
	ssize_t (*listxattr)(void *ctx, const char *snap, const char *path, char *buf,
			     size_t size);
	/* A layered mount's only (NULL otherwise): write the upper layer as
	 * it was at snap into the new directory dir, in overlayfs's format.
	 * 0, or -errno with err filled. */
	int (*export_layer)(void *ctx, const char *snap, const char *dir, char *err,
			    size_t errlen);
	/* Call cb(arg) each time the set of snapshots changes (one taken or
	 * pruned), after the change, on the thread that made it: never one of
	 * the view's requests, and with none of the store's locks held. */
	void (*watch)(void *ctx, void (*cb)(void *arg), void *arg);
};

#endif
