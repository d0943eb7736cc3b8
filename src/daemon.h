/* daemon: the life of a mount — check, mount, serve, unmount, finish — and
 * the client commands that talk to a running daemon. */
#ifndef PFS_DAEMON_H
#define PFS_DAEMON_H

#include "cli.h"

struct pfs_fs;

/* Called from the INIT handler: choose the data path, start the op log and
 * tell a waiting parent that the mount answers (or why it cannot). */
void pfs_daemon_init_done(struct pfs_fs *fs);

/* Each returns the process exit status. */
int pfs_cmd_mount(const struct pfs_config *cfg);
int pfs_cmd_unmount(const struct pfs_config *cfg);
int pfs_cmd_status(const struct pfs_config *cfg);

#endif
