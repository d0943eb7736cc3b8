/* ctl: the control socket. The daemon answers status queries and tells
 * waiting clients (prismfs unmount) how it ended. */
#ifndef PFS_CTL_H
#define PFS_CTL_H

#include <stddef.h>
#include <stdint.h>

struct pfs_fs;
struct pfs_ctl;

/* Socket path for the mount whose device is maj:min. 0 or -errno. */
int pfs_ctl_path(unsigned maj, unsigned min, char *buf, size_t len, int make_dir);

int pfs_ctl_start(struct pfs_ctl **out, struct pfs_fs *fs, const char *path);
/* Tell waiting clients the outcome, stop the thread, remove the socket. */
void pfs_ctl_finish(struct pfs_ctl *ctl, int exit_code, uint64_t dropped);

/* Client: connect to the daemon serving mountpoint (canonical path).
 * Returns a connected fd or -errno; *why explains in one line. */
int pfs_ctl_connect(const char *mountpoint, const char **why);

#endif
