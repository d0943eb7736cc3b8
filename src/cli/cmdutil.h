/* cmdutil: what the daemon's lifecycle (daemon.c) and the client commands
 * (client.c) share: saying one line, and finding a mount by the name it
 * was given. Private to src/cli. */
#ifndef PFS_CMDUTIL_H
#define PFS_CMDUTIL_H

struct pfs_mntent;

/* One line on stderr, "prismfs: " before it; also kept in pfs_said for
 * the library, which asks for silence in its own process only (a forked
 * daemon speaks as usual). */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* An absolute, canonical name for path without stat()ing path itself: the
 * mount point may be a dead FUSE mount that would hang or fail. Malloc'd;
 * NULL if path's directory does not resolve (or out of memory). */
char *canonical_noleaf(const char *path);

/* path's entry in /proc/self/mountinfo: 0, or -errno (-ENOENT: none). */
int find_mount(const char *path, struct pfs_mntent *e);

#endif
