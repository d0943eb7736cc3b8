/* selfmnt: the mount point, as the daemon must see it. A mount point
 * inside SOURCE, a lower or a graft's target is also a name in the backing
 * tree. Opening that name after mounting crosses into this very mount: the
 * daemon sends requests to itself, and any fd it keeps there (a node's)
 * holds the mount busy, so no unmount ever succeeds (EBUSY). The name is
 * answered instead with the directory the mount covers, opened before
 * mounting: the view shows it as a bind mount shows an overmounted
 * directory, and nothing the daemon holds is ever inside its own mount. */
#ifndef PFS_SELFMNT_H
#define PFS_SELFMNT_H

#include <stdbool.h>
#include <sys/stat.h>

struct pfs_fs;

/* Before mounting, with fs->mountpoint an existing directory: remember
 * what it covers. 0 or -errno. */
int pfs_selfmnt_prepare(struct pfs_fs *fs);
void pfs_selfmnt_close(struct pfs_fs *fs);
/* Is name in the directory dirfd the mount point itself? */
bool pfs_selfmnt_is(struct pfs_fs *fs, int dirfd, const char *name);
/* openat and fstatat (same results and errno), but the mount point is
 * the directory it covers. */
int pfs_selfmnt_openat(struct pfs_fs *fs, int dirfd, const char *name, int flags);
int pfs_selfmnt_fstatat(struct pfs_fs *fs, int dirfd, const char *name, struct stat *st,
			int flags);
/* An O_PATH fd on the directory path names, owned, or -errno; symlinks
 * are followed, by the daemon itself wherever a mount is crossed, so that
 * the walk never enters this mount, whatever way leads to it (a symlink,
 * "..", a symlinked ancestor). A relative path is taken beneath dirfd: a
 * ".." above it, or an absolute symlink, gives EXDEV (RESOLVE_BENEATH);
 * reaching the mount point there gives what the mount covers. An absolute
 * path is resolved as open(2) would, but reaching the mount point means
 * the source there: the rest is taken beneath SOURCE. */
int pfs_selfmnt_opendir(struct pfs_fs *fs, int dirfd, const char *path);
/* The same for an absolute path named on the command line (the --map
 * file's directory): the mount point is what it covers, as it was when
 * the path was given. */
int pfs_selfmnt_opendir_covered(struct pfs_fs *fs, const char *path);

#endif
