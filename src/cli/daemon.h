/* daemon: the life of a mount — check, mount, serve, unmount, finish
 * (daemon.c) — and the client commands that talk to a running daemon
 * (client.c). */
#ifndef PFS_DAEMON_H
#define PFS_DAEMON_H

#include "cli/cli.h"

#include <sys/types.h>

struct pfs_fs;

/* Called from the INIT handler: choose the data path, start the op log and
 * tell a waiting parent that the mount answers (or why it cannot). */
void pfs_daemon_init_done(struct pfs_fs *fs);

/* Each returns the process exit status. */
int pfs_cmd_mount(const struct pfs_config *cfg);
/* client.c */
int pfs_cmd_unmount(const struct pfs_config *cfg);
int pfs_cmd_status(const struct pfs_config *cfg);
int pfs_cmd_sync(const struct pfs_config *cfg);

/* For the library (lib.c): the last line the commands said, without the
 * "prismfs: " prefix; the process that keeps them off stderr (0: none);
 * the daemon the last successful background pfs_cmd_mount forked (its
 * parent must reap it). All per thread. */
#define PFS_SAID_LEN 1024
extern _Thread_local char pfs_said[PFS_SAID_LEN];
extern _Thread_local pid_t pfs_say_quiet_pid;
extern _Thread_local pid_t pfs_daemon_pid;

#endif
