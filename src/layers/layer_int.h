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

/* Does the directory name in dirfd (open as fd) hide the layers below? */
bool pfs_layer_is_opaque(struct pfs_fs *fs, int dirfd, const char *name, int fd);

/* The key of a non-directory found in the upper: where it was copied from. */
void pfs_layer_upper_key(struct pfs_fs *fs, int dirfd, const char *name, struct pfs_lfound *f);

#endif
