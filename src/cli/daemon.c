#include "cli/daemon.h"
#include "cli/daemon_layers.h"
#include "cli/cmdutil.h"
#include "cli/cache_mount.h"
#include "cli/throwaway.h"
#include "layers/layer.h"
#include "view/ns.h"
#include "layers/layer_life.h"
#include "map/mapwatch.h"
#include "ctl/ctl.h"
#include "ctl/oplog.h"
#include "fuse/backing.h"
#include "fuse/loop.h"
#include "view/nodefd.h"
#include "commit/failrec.h"
#include "ctl/progress.h"
#include "view/selfmnt.h"
#include "fuse/shim.h"
#include "fuse/uring.h"
#include "util/util.h"
#include "fuse/xport.h"
#include "view/view.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

/* libfuse reports through fuse_log; before mounting, keep its last words so
 * they can be said in our one line instead of beside it. */
static char fuse_msg[512];
static int fuse_log_to_stderr;
static bool fuse_log_debug; /* -d, -o debug: libfuse's trace goes to stderr */

static void fuse_log_capture(enum fuse_log_level level, const char *fmt, va_list ap)
{
	if (level > FUSE_LOG_ERR) {
		if (fuse_log_debug)
			vfprintf(stderr, fmt, ap);
		return;
	}
	vsnprintf(fuse_msg, sizeof(fuse_msg), fmt, ap);
	fuse_msg[strcspn(fuse_msg, "\n")] = '\0';
	if (fuse_log_to_stderr)
		fprintf(stderr, "prismfs: %s\n", fuse_msg);
}

_Thread_local pid_t pfs_daemon_pid;

/* libfuse splits -o on commas; a source path may hold them. */
static char *escape_opt(const char *s)
{
	char *out = malloc(strlen(s) * 2 + 1), *p = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		if (*s == ',' || *s == '\\')
			*p++ = '\\';
		*p++ = *s;
	}
	*p = '\0';
	return out;
}

#define URING_PARAM "/sys/module/fuse/parameters/enable_uring"

/* 1: the kernel offers FUSE over io_uring to new mounts, 0: it is off, -1:
 * the kernel has none. */
static int uring_enabled(void)
{
	char c = 0;
	int fd = open(URING_PARAM, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (read(fd, &c, 1) != 1)
		c = 0;
	close(fd);
	return c == 'Y' || c == '1';
}

/* Why a mount point that holds a FUSE mount is refused. One whose daemon
 * is gone is not busy: it is dead, and says how to clear it (not cleared
 * here: that it is really this user's own and left over is more than a
 * mount can prove). */
static void say_fuse_there(const char *given, const char *mnt, const char *fstype)
{
	bool ours = strcmp(fstype, "fuse.prismfs") == 0, dead;
	const char *why;
	int fd;

	if (ours) {
		fd = pfs_ctl_connect(mnt, &why);
		dead = fd == -ENOTCONN;
		if (fd >= 0)
			close(fd);
	} else {
		dead = pfs_mount_is_dead(mnt);
	}
	if (!dead)
		say("mount point %s is busy: a %s filesystem is already mounted there", given,
		    fstype);
	else if (ours)
		say("%s: a prismfs mount whose daemon is gone is still there; clear it with "
		    "`prismfs unmount %s` (or fusermount3 -u %s)", given, given, given);
	else
		say("%s: a %s mount whose daemon is gone is still there; clear it with "
		    "`fusermount3 -u %s`", given, fstype, given);
}

static int check_config(const struct pfs_config *cfg, struct pfs_fs *fs)
{
	struct stat st;
	struct pfs_mntent *e = malloc(sizeof(*e));
	int r, ret = -1;
	const char *hint;

	if (!e) {
		say("out of memory");
		return -1;
	}
	if (cfg->uring == PFS_UR_ON && uring_enabled() <= 0) {
		say(uring_enabled() < 0 ? "cannot take requests over io_uring (--uring on): this "
					  "kernel has no FUSE over io_uring"
					: "cannot take requests over io_uring (--uring on): it is off in "
					  "the kernel (echo Y > " URING_PARAM ")");
		goto out;
	}
	if (cfg->mirror) {
		fs->mountpoint = canonical_noleaf(cfg->mountpoint);
		if (!fs->mountpoint) {
			say("mount point %s does not exist", cfg->mountpoint);
			goto out;
		}
		if (pfs_cache_mount_open(cfg, fs) < 0)
			goto out;
	} else if ((fs->root_fd = open(cfg->source, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
		if (errno == ENOENT)
			say("source %s does not exist", cfg->source);
		else if (errno == ENOTDIR)
			say("source %s is not a directory", cfg->source);
		else
			say("cannot open source %s: %s", cfg->source, strerror(errno));
		goto out;
	}
	if (!cfg->mirror) {
		fs->source = realpath(cfg->source, NULL);
		fs->mountpoint = canonical_noleaf(cfg->mountpoint);
	}
	if (!fs->source || !fs->mountpoint) {
		say("mount point %s does not exist", cfg->mountpoint);
		goto out;
	}
	if (find_mount(fs->mountpoint, e) == 0 && strncmp(e->fstype, "fuse", 4) == 0) {
		say_fuse_there(cfg->mountpoint, fs->mountpoint, e->fstype);
		goto out;
	}
	if (stat(fs->mountpoint, &st) < 0) {
		if (errno == ENOENT)
			say("mount point %s does not exist", cfg->mountpoint);
		else
			say("mount point %s is not usable: %s", cfg->mountpoint, strerror(errno));
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		say("mount point %s is not a directory", cfg->mountpoint);
		goto out;
	}
	if ((r = pfs_selfmnt_prepare(fs)) < 0) {
		say("mount point %s is not usable: %s", cfg->mountpoint, strerror(-r));
		goto out;
	}
	if ((r = pfs_cli_fuse_dev(&hint)) < 0) {
		say("no access to /dev/fuse: %s%s", strerror(-r), hint);
		goto out;
	}
	ret = pfs_history_mount_open(cfg, fs);
out:
	free(e);
	return ret;
}

static struct fuse_session *new_session(const struct pfs_config *cfg, struct pfs_fs *fs)
{
	char *src = escape_opt(fs->source), *opts = NULL;
	struct fuse_session *se = NULL;

	if (!src)
		return NULL;
	if (asprintf(&opts, "fsname=%s,subtype=prismfs%s%s%s%s", src,
		     pfs_cli_access_opts(cfg),
		     cfg->read_only ? ",ro" : "", cfg->fuse_opts ? "," : "",
		     cfg->fuse_opts ? cfg->fuse_opts : "") >= 0) {
		char *argv[] = {"prismfs", "-o", opts, NULL};
		struct fuse_args args = FUSE_ARGS_INIT(3, argv);

		fuse_msg[0] = '\0';
		se = fuse_session_new(&args, &pfs_ops, sizeof(pfs_ops), fs);
		if (!se)
			say("invalid mount options: %s", fuse_msg[0] ? fuse_msg : opts);
		fuse_opt_free_args(&args);
	}
	free(opts);
	free(src);
	return se;
}

/* Background mode: the parent returns only once the mount answers. */
static int wait_for_child(int rfd, pid_t pid, const char *mountpoint)
{
	char buf[600];
	ssize_t n, used = 0;
	struct stat st;
	int status;

	while ((n = read(rfd, buf + used, sizeof(buf) - 1 - (size_t)used)) > 0)
		used += n;
	buf[used] = '\0';
	close(rfd);
	if (strncmp(buf, "ok", 2) == 0) {
		if (stat(mountpoint, &st) < 0) {
			say("the mount at %s does not answer: %s", mountpoint, strerror(errno));
			return 1;
		}
		return 0;
	}
	if (used > 0) {
		buf[strcspn(buf, "\n")] = '\0';
		say("%s", buf);
	} else {
		say("the daemon died before mounting");
	}
	waitpid(pid, &status, 0);
	return 1;
}

static void report(int pfd, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (pfd >= 0) {
		dprintf(pfd, "%s\n", msg);
	} else {
		fprintf(stderr, "prismfs: %s\n", msg);
	}
}

/* The initial user namespace maps every uid to itself, in one line. */
static bool in_initial_userns(void)
{
	FILE *f = fopen("/proc/self/uid_map", "re");
	unsigned long long inside, outside, count;
	int n;
	bool initial;

	if (!f)
		return true; /* kernels without user namespaces */
	n = fscanf(f, "%llu %llu %llu", &inside, &outside, &count);
	initial = n == 3 && inside == 0 && outside == 0 && count == 4294967295ULL &&
		  fscanf(f, "%llu", &inside) == EOF;
	fclose(f);
	return initial;
}

/* Backing files need CAP_SYS_ADMIN in the initial user namespace; inside a
 * container's namespace the capability is there but does not count. */
static bool have_cap_sys_admin(void)
{
	return in_initial_userns() && pfs_cap_effective(21 /* CAP_SYS_ADMIN */);
}

static void tell_parent(struct pfs_fs *fs, const char *msg)
{
	struct pfs_xport *xp = fs->xport;

	if (xp->ready_fd < 0) {
		if (msg)
			fprintf(stderr, "prismfs: %s\n", msg);
		return;
	}
	dprintf(xp->ready_fd, "%s\n", msg ? msg : "ok");
	close(xp->ready_fd);
	xp->ready_fd = -1;
}

/* In INIT: take requests over io_uring or from /dev/fuse. -1: the mount
 * must not go on (--uring on without io_uring). */
static int choose_requests(struct pfs_fs *fs)
{
	struct pfs_xport *xp = fs->xport;
	const struct pfs_config *cfg = fs->cfg;
	/* libfuse 3.14 lets the kernel send at most 256 pages per request. */
	size_t payload = (size_t)256 * (size_t)sysconf(_SC_PAGESIZE);
	int ret = 0;

	xp->uring = NULL;
	if (cfg->uring == PFS_UR_OFF)
		snprintf(xp->requests_reason, sizeof(xp->requests_reason),
			 "/dev/fuse: io_uring is off (--uring off)");
	else if (!xp->kernel_uring)
		snprintf(xp->requests_reason, sizeof(xp->requests_reason),
			 "/dev/fuse: the kernel does not offer FUSE over io_uring "
			 "(Y in /sys/module/fuse/parameters/enable_uring turns it on)");
	else if ((ret = pfs_uring_prepare(fs, payload, (unsigned)cfg->threads, &xp->uring)) < 0)
		snprintf(xp->requests_reason, sizeof(xp->requests_reason),
			 "/dev/fuse: cannot set up io_uring: %s", strerror(-ret));
	else
		snprintf(xp->requests_reason, sizeof(xp->requests_reason),
			 "io_uring: one queue per CPU, each request answered on the CPU "
			 "that made it");
	if (cfg->uring == PFS_UR_ON && !xp->uring) {
		char msg[240];

		snprintf(msg, sizeof(msg), "cannot take requests over io_uring (--uring on): %s",
			 xp->requests_reason + strlen("/dev/fuse: "));
		xp->init_failed = 1;
		tell_parent(fs, msg);
		fuse_session_exit(xp->se);
		return -1;
	}
	return 0;
}

void pfs_daemon_init_done(struct pfs_fs *fs)
{
	struct pfs_xport *xp = fs->xport;
	const struct pfs_config *cfg = fs->cfg;
	char note[320];

	xp->passthrough_active = false;
	if (cfg->passthrough == PFS_PT_OFF)
		snprintf(xp->data_path_reason, sizeof(xp->data_path_reason),
			 "kernel passthrough is off (--passthrough off)");
	else if (!xp->kernel_passthrough)
		snprintf(xp->data_path_reason, sizeof(xp->data_path_reason),
			 "this kernel does not offer FUSE passthrough");
	else if (!have_cap_sys_admin())
		snprintf(xp->data_path_reason, sizeof(xp->data_path_reason),
			 "kernel passthrough needs CAP_SYS_ADMIN in the initial user namespace, "
			 "which the daemon lacks");
	else
		xp->passthrough_active = true;
	fs->passthrough = xp->passthrough_active;
	if (xp->passthrough_active)
		snprintf(xp->data_path_reason, sizeof(xp->data_path_reason),
			 "kernel passthrough: regular files' data never passes through the daemon");
	if (cfg->passthrough == PFS_PT_ON && !xp->passthrough_active) {
		char msg[240];

		snprintf(msg, sizeof(msg), "cannot use kernel passthrough (--passthrough on): %s",
			 xp->data_path_reason);
		xp->init_failed = 1;
		tell_parent(fs, msg);
		fuse_session_exit(xp->se);
		return;
	}
	if (choose_requests(fs) < 0)
		return;
	if (fs->log) {
		snprintf(note, sizeof(note), "data path: %s%s", xp->data_path_reason,
			 xp->passthrough_active ? " (so reads and writes of regular files are "
						  "not logged; opens, releases and metadata are)"
						: " (every read and write is logged)");
		if (pfs_oplog_start(fs->log, fs->source, fs->mountpoint, note) < 0) {
			pfs_oplog_discard(fs->log);
			fs->log = NULL;
		}
	}
	if (pfs_stores_start(fs) < 0) {
		xp->init_failed = 1;
		tell_parent(fs, "cannot start the cache's write-back or the history");
		fuse_session_exit(xp->se);
		return;
	}
	if ((fs->watch || fs->layers) && pfs_inval_start(fs) < 0) {
		xp->init_failed = 1;
		tell_parent(fs, "cannot start the invalidation thread");
		fuse_session_exit(xp->se);
		return;
	}
	if (fs->watch && pfs_mapwatch_start(fs) < 0) {
		xp->init_failed = 1;
		tell_parent(fs, "cannot start following the mapping source");
		fuse_session_exit(xp->se);
		return;
	}
	tell_parent(fs, NULL);
}

/* A backing file that is itself on a stacking filesystem needs depth 2. */
static int stack_depth_of(int fd)
{
	struct statfs sf;

	if (fstatfs(fd, &sf) == 0 && (sf.f_type == 0x794c7630 /* overlayfs */ ||
				      sf.f_type == 0x65735546 /* fuse */))
		return 2;
	return 1;
}

/* How serve() went, for what follows the session. */
struct served {
	bool mounted;         /* the kernel mount was made */
	bool ran;             /* ... answered, and ended cleanly: the unmount action may run */
	struct pfs_ctl *ctl;  /* stopped; still holds the clients waiting for the end */
};

/* Mount, answer the kernel until the session ends, unmount. lp: the layers
 * of a copy-on-write mount, or NULL. Returns the exit status so far. */
static int serve(const struct pfs_config *cfg, struct pfs_fs *fs, struct fuse_session *se,
		 int pfd, const struct pfs_layer_paths *lp, struct served *sv)
{
	struct pfs_xport *xp = fs->xport;
	struct pfs_mntent *e = malloc(sizeof(*e));
	struct pfs_ctl *ctl = NULL;
	char sock[108];
	int ret = 1, loop;

	if (!e) {
		report(pfd, "out of memory");
		return 1;
	}
	/* Opened here, after any fork: /proc/self is resolved at open time. */
	fs->proc_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fs->proc_fd < 0) {
		report(pfd, "cannot open /proc/self/fd: %s", strerror(errno));
		goto out;
	}
	if (fuse_set_signal_handlers(se) < 0) {
		report(pfd, "cannot install signal handlers");
		goto out;
	}
	fuse_msg[0] = '\0';
	if (fuse_session_mount(se, fs->mountpoint) < 0) {
		report(pfd, "cannot mount on %s: %s", fs->mountpoint,
		       fuse_msg[0] ? fuse_msg : "mount failed");
		goto out_signals;
	}
	sv->mounted = true;
	if (cfg->nosymfollow && pfs_mount_nosymfollow(fs->mountpoint) < 0) {
		report(pfd, "cannot make %s nosymfollow: %s", fs->mountpoint, strerror(errno));
		goto out_unmount;
	}
	if (pfs_shim_install(fs) < 0) {
		report(pfd, "cannot install the FUSE channel shim");
		goto out_unmount;
	}
	if (find_mount(fs->mountpoint, e) < 0 ||
	    pfs_ctl_path(e->major, e->minor, sock, sizeof(sock), 1) < 0 ||
	    pfs_ctl_start(&ctl, fs, sock, lp, cfg->action) < 0) {
		report(pfd, "cannot start the control socket for %s", fs->mountpoint);
		goto out_unmount;
	}
	xp->stack_depth = stack_depth_of(fs->root_fd);
	/* The INIT handler tells the parent: the mount answers only then. */
	xp->ready_fd = pfd;
	pfd = -1;
	if (xp->ready_fd >= 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
			dup2(null, STDERR_FILENO);
			close(null);
		}
	}
	fuse_log_to_stderr = 1;
	loop = pfs_loop_run(se, (unsigned)cfg->threads, pfs_shim_request_done, fs);
	/* A signal (>0) or the kernel ending the connection are clean ends. */
	ret = loop < 0 || xp->init_failed ? 1 : 0;
	if (loop < 0)
		say("session ended with an error: %s", strerror(-loop));
	sv->ran = ret == 0 && xp->ready_fd < 0;
	if (xp->ready_fd >= 0)
		tell_parent(fs, "the kernel never started the session");
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out:
	pfs_mapwatch_stop(fs);
	pfs_inval_stop(fs);
	/* No more status answers: what they read is torn down next. */
	pfs_ctl_stop(ctl);
	/* After the unmount: the kernel may ask for a last reply on a ring. */
	pfs_uring_stop(xp->uring);
	xp->uring = NULL;
	sv->ctl = ctl;
	if (pfd >= 0)
		close(pfd);
	free(e);
	return ret;
}

/* After the session, with nothing holding files in the layers any more:
 * run the unmount action on the upper, close the op log and tell the
 * waiting clients how it all went. Returns the exit status. */
static int finish(const struct pfs_config *cfg, struct pfs_fs *fs,
		  const struct pfs_layer_paths *lp, const struct served *sv, int ret)
{
	static char msg[3 * PATH_MAX];
	enum pfs_action a = pfs_ctl_action(sv->ctl);
	char *line = NULL;
	uint64_t dropped;
	int r = 0, told;

	if (lp && sv->ran) {
		uint64_t t0 = pfs_now_ns();
		bool sink = pfs_ctl_wants_progress(sv->ctl);

		r = pfs_layers_finalize(lp, a, sink ? pfs_ctl_progress : NULL, sv->ctl, msg,
					sizeof(msg));
		pfs_daemon_record_action(cfg, fs, lp, a, r, msg, t0);
		if (r < 0)
			ret = 1;
		if (asprintf(&line, "%s %s %s", pfs_action_name(a), r < 0 ? "failed" : "ok",
			     msg) < 0)
			line = NULL;
	} else if (lp && sv->mounted && a != PFS_ACT_PRESERVE) {
		/* A session that failed leaves the upper as it is, for a look. */
		snprintf(msg, sizeof(msg), "the mount ended in an error, so %s did not run: the "
			 "upper %s is kept", pfs_action_name(a), lp->upper);
		say("%s", msg);
		r = -EIO;
		if (asprintf(&line, "%s failed %s", pfs_action_name(a), msg) < 0)
			line = NULL;
	}
	if (fs->cache && pfs_cache_mount_finish(fs, msg, sizeof(msg)) < 0) {
		say("%s", msg);
		ret = 1;
		free(line);
		if (asprintf(&line, "write-back failed %s", msg) < 0)
			line = NULL;
	}
	dropped = pfs_oplog_close(fs->log);
	fs->log = NULL;
	if (dropped)
		say("op log: %llu records dropped", (unsigned long long)dropped);
	if (line)
		line[strcspn(line, "\n")] = '\0'; /* the protocol is line based */
	pfs_throwaway_finish(a, sv->ran, r); /* before the waiting client hears */
	told = pfs_ctl_finish(sv->ctl, ret, dropped, line);
	free(line);
	if (lp && r < 0 && told == 0)
		pfs_daemon_leave_failure_record(cfg, fs, lp, msg);
	else if (lp && r == 0 && sv->ran && (a == PFS_ACT_COMMIT || a == PFS_ACT_COMMIT_ATOMIC ||
					     a == PFS_ACT_DISCARD))
		pfs_failrec_clear(lp->upper);
	return ret;
}

int pfs_cmd_mount(const struct pfs_config *cfg)
{
	struct pfs_xport xport = PFS_XPORT_INIT;
	struct pfs_fs_opts opts = {.read_only = cfg->read_only, .timeout = cfg->timeout,
				   .volatile_source = cfg->volatile_source, .idmap = cfg->idmap,
				   .mapped = cfg->map_path != NULL, .layered = cfg->upper || cfg->nlowers,
				   .logged = cfg->log_path != NULL, .acl = cfg->default_permissions,
				   .squash_uid = cfg->squash_uid, .squash_gid = cfg->squash_gid};
	struct pfs_fs fs;
	struct fuse_session *se = NULL;
	struct pfs_layer_paths lpaths = {0}, *lp = cfg->upper || cfg->nlowers ? &lpaths : NULL;
	struct served sv = {0};
	bool served = false, layers_open = false;
	const struct pfs_past *lpast = NULL;
	int ret = 1, pipefd[2] = {-1, -1};
	pid_t pid;

	umask(0); /* the caller's umask is applied by the view (view/acl.c) */
	fuse_log_debug = cfg->debug;
	fuse_set_log_func(fuse_log_capture);
	/* Room for one O_PATH fd per node the kernel holds, as far as the
	 * system allows (past that, nodefd.c closes the least used ones). */
	pfs_raise_fd_limit();
	pfs_fs_init(&fs, &opts);
	fs.cfg = cfg;
	fs.xport = &xport;
	xport.init_done = pfs_daemon_init_done;
	{
		char err[256];

		fs.store = pfs_store_default(err, sizeof(err));
		if (!fs.store) {
			say("%s", err);
			goto out;
		}
	}
	if (cfg->upper && pfs_daemon_recover_source(cfg, &fs) < 0)
		goto out;
	if (check_config(cfg, &fs) < 0)
		goto out;
	if (lp) {
		if (pfs_daemon_open_layers(cfg, &fs, lp) < 0)
			goto out;
		layers_open = true;
	}
	if (fs.past && fs.layers) {
		/* the history's past is the upper's: show it merged */
		fs.past = pfs_layers_past(&fs, fs.past);
		if (!fs.past) {
			say("out of memory");
			goto out;
		}
		lpast = fs.past;
	}
	fs.ns = pfs_ns_for(&fs);
	if (cfg->map_path) {
		char err[PFS_MAP_ERRLEN + 128] = "";

		if (pfs_mapwatch_prepare(&fs, cfg->map_path, cfg->map_max, err, sizeof(err)) < 0) {
			say("%s", err);
			goto out;
		}
	}
	if (cfg->log_path) {
		int r = pfs_oplog_open(&fs.log, cfg->log_path, cfg->log_format, 65536);

		if (r < 0) {
			say("cannot open log %s: %s", cfg->log_path, strerror(-r));
			goto out;
		}
	}
	if (pfs_nodefd_init(&fs, cfg->node_fds) < 0 || pfs_nodes_init(&fs, fs.root_fd) < 0) {
		say("cannot set up the node table");
		goto out;
	}
	if (layers_open) {
		char err[256];

		if (pfs_layers_mark_mapped(&fs, err, sizeof(err)) < 0) {
			say("%s", err);
			goto out;
		}
		if (cfg->upper)
			pfs_layers_record_lowers(lp);
	}
	se = new_session(cfg, &fs);
	if (!se)
		goto out;
	xport.se = se;
	pfs_backing_register(&fs);
	if (cfg->upper)
		pfs_daemon_report_failure_record(lp);
	if (cfg->foreground) {
		ret = serve(cfg, &fs, se, -1, lp, &sv);
		served = true;
		goto out;
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		say("cannot create a pipe: %s", strerror(errno));
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		say("cannot fork: %s", strerror(errno));
		goto out;
	}
	if (pid > 0) {
		close(pipefd[1]);
		pipefd[1] = -1;
		ret = wait_for_child(pipefd[0], pid, fs.mountpoint);
		sv.mounted = ret == 0;
		pfs_daemon_pid = ret == 0 ? pid : 0;
		pipefd[0] = -1;
		pfs_oplog_discard(fs.log);
		fs.log = NULL;
		/* The child owns the mount; only release our copies. */
		goto out;
	}
	close(pipefd[0]);
	pipefd[0] = -1;
	setsid();
	(void)!chdir("/"); /* harmless if not: the daemon reaches files through its fds */
	ret = serve(cfg, &fs, se, pipefd[1], lp, &sv);
	served = true;
	pipefd[1] = -1;
out:
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	if (se)
		fuse_session_destroy(se);
	pfs_fs_fini(&fs);
	if (served)
		ret = finish(cfg, &fs, cfg->upper ? lp : NULL, &sv, ret);
	else if (fs.log)
		pfs_oplog_close(fs.log);
	if (lp && !sv.mounted)
		pfs_layer_paths_abandon(lp);
	pfs_layer_paths_free(&lpaths);
	pfs_store_free(fs.store);
	if (lpast)
		pfs_layers_past_free(lpast);
	free(fs.source);
	free(fs.mountpoint);
	return ret;
}
