/* throwaway: the conveniences of a throw-away layered mount — an upper
 * made beside the source (SOURCE_upper, --default-upper) and a new mount
 * point (--new-mountpoint tmp|cache). What the mount made is remembered
 * here (the daemon inherits it across its fork) so that the unmount action
 * removes only that, never a directory that was there before. */
#ifndef PFS_CLI_THROWAWAY_H
#define PFS_CLI_THROWAWAY_H

#include "cli/cli.h"

#include <stdbool.h>

/* Before mounting: make the upper and the mount point cfg asks for and
 * point cfg at them. 0, or -errno with a one-line message said. */
int pfs_throwaway_prepare(struct pfs_config *cfg);

/* After a mount command: when it did not mount (!ok), remove what prepare
 * made. Returns a copy of the made mount point's path when it mounted
 * (the caller frees it), else NULL; the daemon owns what was made now. */
char *pfs_throwaway_after_mount(bool ok);

/* In the daemon once the unmount action ran (or not, ran false): remove
 * what the mount made, as the action says — discard: upper and mount
 * point; commit: both after success (r == 0); preserve: the mount point. */
void pfs_throwaway_finish(enum pfs_action a, bool ran, int r);

#endif
