/* ctl: the control socket. The daemon answers status queries and tells
 * waiting clients (prismfs unmount) how it ended.
 *
 * One request line per connection:
 *   status                  -> the status as one JSON object
 *   history                 -> "dir DIR": the mount's --history directory
 *   snapshot PIN [NAME]     -> "ok ID": a history snapshot taken (PIN 0|1)
 *                              (both: "error MESSAGE" without --history)
 *   wait [action=ACTION] [progress]
 *                           -> "pid PID action ACTION" (ACTION: what the upper
 *                              gets at unmount, "none" without layers) or
 *                              "error MESSAGE"; then, with progress, while a
 *                              commit runs at unmount, any number of
 *                              "progress FILES FILES_TOTAL BYTES BYTES_TOTAL
 *                              SHARED" (progress.h); then, once the daemon is
 *                              done: "exit CODE dropped N[ action ACTION
 *                              ok|failed MSG]"
 */
#ifndef PFS_CTL_H
#define PFS_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layers/layer_opts.h"
#include "ctl/progress.h"

struct pfs_fs;
struct pfs_ctl;
struct pfs_layer_paths;

/* Socket path for the mount whose device is maj:min. 0 or -errno. */
int pfs_ctl_path(unsigned maj, unsigned min, char *buf, size_t len, int make_dir);

/* layers: the paths of a copy-on-write mount (NULL for a plain one), with
 * on_unmount the action its upper gets unless `prismfs unmount --action`
 * asks for another. Both must outlive the ctl. */
int pfs_ctl_start(struct pfs_ctl **out, struct pfs_fs *fs, const char *path,
		  const struct pfs_layer_paths *layers, enum pfs_action on_unmount);
/* Stop answering (the session has ended): stop the thread and remove the
 * socket; waiting clients stay connected until pfs_ctl_finish. */
void pfs_ctl_stop(struct pfs_ctl *ctl);
/* The action to run at unmount: the last one a client asked for, or
 * on_unmount. Only after pfs_ctl_stop. */
enum pfs_action pfs_ctl_action(const struct pfs_ctl *ctl);
/* Does a waiting client want progress records? Only after pfs_ctl_stop. */
bool pfs_ctl_wants_progress(const struct pfs_ctl *ctl);
/* pfs_progress_sink (arg: the ctl): send the counts to the waiting clients
 * that asked for them. Never blocks: a client that does not read misses
 * records. Only after pfs_ctl_stop. */
void pfs_ctl_progress(void *ctl, const struct pfs_progress *p);
/* Tell waiting clients the outcome (action_line: NULL, or one line about
 * the unmount action: "ACTION ok MSG" or "ACTION failed ERROR"), stop if
 * not stopped yet, free. Returns how many clients were told. */
int pfs_ctl_finish(struct pfs_ctl *ctl, int exit_code, uint64_t dropped,
		   const char *action_line);

/* Client: connect to the daemon serving mountpoint (canonical path).
 * Returns a connected fd or -errno; *why explains in one line. -ENOTCONN:
 * the daemon is gone and its mount is dead (every access to it fails so). */
int pfs_ctl_connect(const char *mountpoint, const char **why);

struct pfs_mntent;
/* Is e a prismfs mount? Its type says so (fuse.prismfs) unless -o subtype=
 * renamed it; then the control socket named by its device does. */
bool pfs_ctl_is_prismfs(const struct pfs_mntent *e);

#endif
