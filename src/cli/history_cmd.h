/* history_cmd: prismfs log, snapshot, snapshots (issue 17). */
#ifndef PFS_HISTORY_CMD_H
#define PFS_HISTORY_CMD_H

#include <stdbool.h>

/* Is word one of these commands? */
bool pfs_history_cmd_is(const char *word);
/* Run `prismfs argv[1] ...`: its exit code (2: bad usage). */
int pfs_history_cmd(int argc, char **argv);

#endif
