/* daemon: the life of a mount — check, mount, serve, unmount, finish — and
 * the client commands that talk to a running daemon. */
#ifndef PFS_DAEMON_H
#define PFS_DAEMON_H

#include "cli.h"

/* Each returns the process exit status. */
int pfs_cmd_mount(const struct pfs_config *cfg);
int pfs_cmd_unmount(const struct pfs_config *cfg);
int pfs_cmd_status(const struct pfs_config *cfg);

#endif
