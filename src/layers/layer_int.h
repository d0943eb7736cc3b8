/* layer_int: what the files of src/layers share and nothing else calls. */
#ifndef PFS_LAYER_INT_H
#define PFS_LAYER_INT_H

#include <stdbool.h>
#include <sys/stat.h>

#include "layers/layer.h"

/* lstat and open of the entry name in a layer's directory dirfd, through
 * the store; the mount point itself (a name in a backing tree too) is the
 * directory it covers, as pfs_selfmnt_* give it. 0 / a descriptor, or
 * -errno. */
int pfs_layer_lstat_at(struct pfs_fs *fs, int dirfd, const char *name, struct stat *st);
int pfs_layer_open_at(struct pfs_fs *fs, int dirfd, const char *name, int flags);
/* The entry name in a layer's directory dirfd (no name: dirfd itself) as
 * a store reference that never crosses into this mount: for the by-name
 * calls (xattrs, metadata) on what may be the mount point. */
struct pfs_ref pfs_layer_ref(struct pfs_fs *fs, int dirfd, const char *name);

/* Does the directory name in dirfd (open as fd) hide the layers below? */
bool pfs_layer_is_opaque(struct pfs_fs *fs, int dirfd, const char *name, int fd);

/* The key of a non-directory found in the upper: where it was copied from. */
void pfs_layer_upper_key(struct pfs_fs *fs, int dirfd, const char *name, struct pfs_lfound *f);

/* redirect.c. The overlay.redirect of the directory name in dirfd, valid
 * (malloc'd in *out): 1; none: 0 (*out NULL); or -errno (-EINVAL,
 * -EACCES: invalid, as the kernel says). */
int pfs_redir_get(struct pfs_fs *fs, int dirfd, const char *name, char **out);
/* The name a lookup searches the layers below by, once a directory on it
 * has redirect r: cur's first prelen bytes (relative r replaces one
 * component) then r, then post (what follows the component). 0 or -errno. */
int pfs_redir_apply(const char *cur, size_t prelen, const char *r, const char *post, char **out);
/* Before the upper directory name in ud (parent's) is renamed, samedir
 * within parent: give it the redirect that keeps its lower parts, as the
 * kernel does (one it has already is kept where it stays right). */
int pfs_redir_set_renamed(struct pfs_fs *fs, struct pfs_node *parent, int ud, const char *name,
			  bool samedir);

#endif
