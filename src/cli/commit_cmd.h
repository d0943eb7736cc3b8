/* commit_cmd: the commit, discard and recover commands — the C API of
 * commit.h behind the command line's one-line errors and exit status. */
#ifndef PFS_COMMIT_CMD_H
#define PFS_COMMIT_CMD_H

#include "cli/cli.h"

/* Each returns the process exit status. */
int pfs_cmd_commit(const struct pfs_config *cfg);
int pfs_cmd_discard(const struct pfs_config *cfg);
int pfs_cmd_recover(const struct pfs_config *cfg);

#endif
