/* daemon_layers: the daemon's part in a copy-on-write mount's layers —
 * recovering SOURCE and opening the layers before the mount, and saying
 * (or leaving a record of) how the unmount action went (daemon_layers.c).
 * Used by daemon.c only. */
#ifndef PFS_DAEMON_LAYERS_H
#define PFS_DAEMON_LAYERS_H

#include "cli/cli.h"
#include "layers/layer_opts.h"

#include <stdint.h>

struct pfs_fs;
struct pfs_layer_paths;

/* Each returns 0, or -1 after saying why. */
int pfs_daemon_recover_source(const struct pfs_config *cfg, struct pfs_fs *fs);
int pfs_daemon_open_layers(const struct pfs_config *cfg, struct pfs_fs *fs,
			   struct pfs_layer_paths *lp);

void pfs_daemon_report_failure_record(const struct pfs_layer_paths *lp);
void pfs_daemon_record_action(const struct pfs_config *cfg, struct pfs_fs *fs,
			      const struct pfs_layer_paths *lp, enum pfs_action a, int r,
			      const char *msg, uint64_t t0);
void pfs_daemon_leave_failure_record(const struct pfs_config *cfg, struct pfs_fs *fs,
				     const struct pfs_layer_paths *lp, const char *msg);

#endif
