/* cli_check: what the command line means that parsing alone cannot tell
 * (it does no I/O): a first word that is neither a command nor a path, a
 * -o value libfuse refuses, an upperdir= whose lowerdir= is missing; and
 * who may use a mount (pfs_cli_access_opts, declared in cli.h). */
#ifndef PFS_CLI_CHECK_H
#define PFS_CLI_CHECK_H

#include "cli/cli.h"

#include <stddef.h>

/* cfg->maybe_cmd names nothing that exists: a mistyped command. Then
 * -EINVAL with the one-line reason in err (whatever parsing said). */
int pfs_cli_check_command(const struct pfs_config *cfg, char *err, size_t errlen);

/* Before mounting: the -o options libfuse would refuse, and upperdir=
 * given with neither lowerdir= nor an existing SOURCE. 0 or -EINVAL with
 * the one-line reason in err (bad usage: exit 2). */
int pfs_cli_check_mount(const struct pfs_config *cfg, char *err, size_t errlen);

#endif
