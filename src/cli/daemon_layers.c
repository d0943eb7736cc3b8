#include "cli/daemon_layers.h"
#include "cli/daemon.h"
#include "cli/cmdutil.h"
#include "layers/layer.h"
#include "layers/layer_life.h"
#include "commit/failrec.h"
#include "ctl/oplog.h"
#include "util/util.h"
#include "view/view.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

/* Before SOURCE is opened: an interrupted commit of it is finished (or an
 * atomic one rolled back), so the mount shows one whole tree. */
int pfs_daemon_recover_source(const struct pfs_config *cfg, struct pfs_fs *fs)
{
	char err[3 * PATH_MAX], note[PATH_MAX + 128];

	if (pfs_layers_recover(fs->store, cfg->source, cfg->upper, note, sizeof(note), err,
			       sizeof(err)) < 0) {
		say("cannot mount: %s", err);
		return -1;
	}
	if (note[0])
		say("%s", note);
	return 0;
}

/* Once everything is checked, just before mounting: a failed unmount
 * action of an earlier mount of this upper that nobody heard is said here,
 * once. The library says nothing, so it leaves the record to the command. */
void pfs_daemon_report_failure_record(const struct pfs_layer_paths *lp)
{
	char line[3 * PATH_MAX + 256];

	if (pfs_say_quiet_pid == getpid())
		return;
	/* Not say(): its buffer would cut a long error short. */
	if (pfs_failrec_take(lp->upper, line, sizeof(line)) > 0)
		fprintf(stderr, "prismfs: the unmount action of an earlier mount failed: %s\n",
			line);
}

/* After check_config opened SOURCE: the paths of the layers, the work
 * directory, then the layers themselves, all before anything is mounted. */
int pfs_daemon_open_layers(const struct pfs_config *cfg, struct pfs_fs *fs,
			   struct pfs_layer_paths *lp)
{
	char err[3 * PATH_MAX];
	struct pfs_layer_spec spec = {.upper = cfg->upper, .work = cfg->work, .ndata = cfg->ndata,
				      .lowers = cfg->lowers, .nlowers = cfg->nlowers,
				      .whiteout = cfg->whiteout, .map = cfg->map_path != NULL,
				      .action = cfg->action, .userxattr = cfg->userxattr,
				      .redirect = cfg->redirect, .metacopy = cfg->metacopy,
				      .lower_pt = cfg->lower_pt};

	if (pfs_layer_paths_get(lp, fs->store, &spec, fs->source, err, sizeof(err)) < 0) {
		say("%s", err);
		return -1;
	}
	spec.upper = lp->upper;
	spec.work = lp->work;
	spec.lowers = (const char *const *)lp->lowers;
	spec.nlowers = lp->nlowers;
	err[0] = '\0';
	if (pfs_layers_open(fs, &spec, err, sizeof(err)) < 0) {
		say("%s", err[0] ? err : "cannot open the layers");
		return -1;
	}
	return 0;
}

/* The outcome of the unmount action, where someone may look for it: stderr
 * (a terminal in the foreground), syslog (in the background nobody may be
 * waiting: plain umount, fstab) and the op log. */
void pfs_daemon_record_action(const struct pfs_config *cfg, struct pfs_fs *fs,
			      const struct pfs_layer_paths *lp, enum pfs_action a, int r,
			      const char *msg, uint64_t t0)
{
	struct pfs_logarg args[] = {PFS_LA_STR("action", pfs_action_name(a)),
				    PFS_LA_STR("upper", lp->upper),
				    PFS_LA_STR("lower", lp->lowers[0]),
				    r < 0 ? (struct pfs_logarg)PFS_LA_STR("error", msg)
					  : (struct pfs_logarg)PFS_LA_END,
				    PFS_LA_END};
	struct pfs_oprec rec = {.op = "unmount-action", .args = args, .result = r, .t0_ns = t0,
				.t1_ns = pfs_now_ns()};

	if (msg[0])
		say("%s", msg);
	if (!cfg->foreground && msg[0])
		syslog(LOG_DAEMON | (r < 0 ? LOG_ERR : LOG_INFO), "prismfs %s: %s",
		       fs->mountpoint, msg);
	if (fs->log)
		pfs_oplog_op(fs->log, &rec);
}

/* A failed unmount action that no prismfs unmount heard: leave the record
 * the next mount with this upper reports (failrec.h). */
void pfs_daemon_leave_failure_record(const struct pfs_config *cfg, struct pfs_fs *fs,
				     const struct pfs_layer_paths *lp, const char *msg)
{
	int r = pfs_failrec_write(lp->upper, fs->mountpoint, msg);

	if (r < 0 && !cfg->foreground)
		syslog(LOG_DAEMON | LOG_ERR, "prismfs %s: cannot leave a record of the failure "
		       "beside %s: %s", fs->mountpoint, lp->upper, strerror(-r));
	else if (r < 0)
		say("cannot leave a record of the failure beside %s: %s", lp->upper,
		    strerror(-r));
}
