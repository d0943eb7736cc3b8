/* client: the commands that talk to a running daemon over its control
 * socket — unmount (unmount, then wait for the daemon's end and its
 * action's outcome) and status. */
#include "cli/cmdutil.h"
#include "cli/daemon.h"
#include "ctl/ctl.h"
#include "ctl/progress.h"
#include "util/util.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int read_line(int fd, char *buf, size_t len, int timeout_ms)
{
	size_t used = 0;

	while (used + 1 < len) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;
		int r = poll(&p, 1, timeout_ms);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r == 0 ? -ETIMEDOUT : -errno;
		n = recv(fd, buf + used, 1, 0);
		if (n <= 0)
			return n == 0 ? -EPIPE : -errno;
		if (buf[used] == '\n')
			break;
		used++;
	}
	buf[used] = '\0';
	return (int)used;
}

static int do_umount(const char *mnt)
{
	pid_t pid;
	int status;

	if (geteuid() == 0)
		return umount2(mnt, UMOUNT_NOFOLLOW) < 0 ? -errno : 0;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", "-q", mnt, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EBUSY;
}

/* Say what the daemon reported at its end: "exit CODE dropped N[ action
 * ACTION ok|failed MSG]". Returns the exit status for prismfs unmount. */
static int report_end(const struct pfs_config *cfg, const char *line)
{
	int code = 1, n = 0;
	unsigned long long dropped = 0;
	const char *act;

	if (sscanf(line, "exit %d dropped %llu%n", &code, &dropped, &n) < 1) {
		say("unexpected answer from the daemon: %s", line);
		return 1;
	}
	if (dropped)
		say("op log: %llu records were dropped", dropped);
	act = n > 0 && strncmp(line + n, " action ", 8) == 0 ? line + n + 8 : NULL;
	if (act) {
		const char *sp = strchr(act, ' ');
		const char *msg = sp ? strchr(sp + 1, ' ') : NULL;

		msg = msg ? msg + 1 : "";
		if (sp && strncmp(sp + 1, "failed", 6) == 0) {
			/* The action's line says it all; the status follows from it. */
			say("%s", msg[0] ? msg : "the unmount action failed");
			return code ? code : 1;
		}
		/* The library's caller gets no lines on its stdout. */
		if (msg[0] && pfs_say_quiet_pid != getpid())
			printf("%s\n", msg);
	}
	if (code != 0)
		say("the daemon for %s ended with status %d", cfg->mountpoint, code);
	return code;
}

/* Connect to the daemon of mnt and register to hear its end; line gets
 * its first answer. Returns the fd, or -errno (*why says why). */
static int ask_wait(const char *mnt, enum pfs_action action, bool progress, char *line,
		    size_t len, const char **why)
{
	char req[64];
	int fd;

	snprintf(req, sizeof(req), "wait%s%s%s\n", action != PFS_ACT_NONE ? " action=" : "",
		 action != PFS_ACT_NONE ? pfs_action_name(action) : "",
		 progress ? " progress" : "");
	fd = pfs_ctl_connect(mnt, why);
	if (fd >= 0 && (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req) ||
			read_line(fd, line, len, 5000) < 0)) {
		close(fd);
		return -EPIPE;
	}
	return fd;
}

/* Until the daemon's last line: draw the progress records that come
 * before it (a commit at unmount), then leave line holding the last one.
 * timeout_ms is for each line. Returns read_line's result. */
static int wait_end(int fd, char *line, size_t len, int timeout_ms, struct pfs_progress *prog)
{
	int r;

	while ((r = read_line(fd, line, len, timeout_ms)) >= 0 &&
	       pfs_progress_decode(line, prog) == 0)
		pfs_progress_redraw(prog);
	pfs_progress_end(prog);
	return r;
}

/* Ask the daemon of mnt to write everything back ("sync"). 0 when done
 * (or it has nothing to write back), 1 with the reason in msg when not,
 * -errno when it cannot be asked. */
static int ask_sync(const char *mnt, char *msg, size_t len)
{
	const char *why;
	int fd = pfs_ctl_connect(mnt, &why), r;

	if (fd < 0)
		return fd;
	r = send(fd, "sync\n", 5, MSG_NOSIGNAL) == 5 ? read_line(fd, msg, len, -1) : -errno;
	close(fd);
	if (r < 0)
		return r;
	if (strcmp(msg, "ok") == 0 || strcmp(msg, "error unknown command") == 0)
		return 0; /* a daemon from before caches: nothing to write back */
	if (strncmp(msg, "error ", 6) == 0)
		memmove(msg, msg + 6, strlen(msg + 6) + 1);
	return 1;
}

int pfs_cmd_sync(const struct pfs_config *cfg)
{
	char *mnt = canonical_noleaf(cfg->mountpoint);
	char msg[1024];
	int r;

	if (!mnt) {
		say("%s does not exist", cfg->mountpoint);
		return 1;
	}
	r = ask_sync(mnt, msg, sizeof(msg));
	free(mnt);
	if (r < 0)
		say("cannot reach the daemon of %s: %s", cfg->mountpoint, strerror(-r));
	else if (r > 0)
		say("%s: %s", cfg->mountpoint, msg);
	return r == 0 ? 0 : 1;
}

int pfs_cmd_unmount(const struct pfs_config *cfg)
{
	char *mnt = canonical_noleaf(cfg->mountpoint);
	struct pfs_mntent *e = malloc(sizeof(*e));
	const char *why = NULL;
	static char line[3 * PATH_MAX + 128];
	char pending[32] = "none";
	int fd = -1, pidfd = -1, ret = 1, r;
	int daemon_pid = 0;
	bool long_wait;
	/* As the offline commit: a progress line only on a terminal, and
	 * never from the library, which prints nothing. */
	bool progress = isatty(STDERR_FILENO) && pfs_say_quiet_pid != getpid();
	struct pfs_progress prog;

	if (!mnt || !e) {
		say("%s does not exist", cfg->mountpoint);
		goto out;
	}
	if (find_mount(mnt, e) < 0 || !pfs_ctl_is_prismfs(e)) {
		say("%s is not a prismfs mount", cfg->mountpoint);
		goto out;
	}
	/* A cache writes everything back first; if it cannot, nothing is
	 * unmounted (unless forced: then the daemon quarantines it). */
	if (!cfg->force && ask_sync(mnt, line, sizeof(line)) == 1) {
		say("not unmounting %s: %s (prismfs unmount --force keeps what is not written "
		    "back in a quarantine directory)", cfg->mountpoint, line);
		goto out;
	}
	pfs_progress_init(&prog, progress, stderr, "commit");
	fd = ask_wait(mnt, cfg->action, progress, line, sizeof(line), &why);
	if (fd >= 0 && progress && strcmp(line, "error unknown wait request") == 0) {
		/* A daemon started before prismfs learnt to send progress:
		 * unmount without it. */
		close(fd);
		fd = ask_wait(mnt, cfg->action, false, line, sizeof(line), &why);
	}
	if (fd >= 0 && strncmp(line, "error ", 6) == 0) {
		say("%s", line + 6);
		goto out;
	}
	if (fd == -ENOTCONN && cfg->action != PFS_ACT_NONE) {
		/* The daemon took what it knew of the upper with it. */
		say("--action %s needs the daemon of %s, but it is gone; not unmounting (clear "
		    "the dead mount with `prismfs unmount %s`, then prismfs %s the upper "
		    "offline)", pfs_action_name(cfg->action), cfg->mountpoint, cfg->mountpoint,
		    cfg->action == PFS_ACT_DISCARD ? "discard" : "commit");
		goto out;
	}
	if (fd < 0 && cfg->action != PFS_ACT_NONE) {
		/* Only the daemon knows the upper: unmounting now would leave
		 * the action undone without saying so. */
		say("--action %s needs the daemon of %s, but %s; not unmounting",
		    pfs_action_name(cfg->action), cfg->mountpoint,
		    why ? why : "it does not answer");
		goto out;
	}
	if (fd >= 0 && sscanf(line, "pid %d action %31s", &daemon_pid, pending) >= 1)
		pidfd = (int)syscall(SYS_pidfd_open, daemon_pid, 0);
	r = do_umount(mnt);
	if (r < 0) {
		if (r == -EBUSY)
			say("cannot unmount %s: it is busy (a program has a file open or its "
			    "working directory there)", cfg->mountpoint);
		else
			say("cannot unmount %s: %s", cfg->mountpoint, strerror(-r));
		goto out;
	}
	if (fd == -ENOTCONN) {
		/* Cleared, as asked: the mount was dead, nothing was lost here. */
		say("unmounted %s, a dead mount: its daemon was gone", cfg->mountpoint);
		ret = 0;
		goto out;
	}
	if (fd < 0) {
		/* Unmounted, but no daemon to wait for: it had died. */
		say("unmounted %s; its daemon was not running", cfg->mountpoint);
		goto out;
	}
	/* A commit or discard takes as long as the upper is big: wait for it
	 * as long as the daemon lives (its end closes the socket). */
	long_wait = strcmp(pending, "none") != 0 && strcmp(pending, "preserve") != 0;
	r = wait_end(fd, line, sizeof(line), long_wait ? -1 : 120000, &prog);
	if (r < 0) {
		say("unmounted %s, but its daemon did not report how it ended", cfg->mountpoint);
		goto out;
	}
	ret = report_end(cfg, line);
	/* The daemon has said its last word; wait until it is really gone. */
	if (pidfd >= 0) {
		struct pollfd p = {.fd = pidfd, .events = POLLIN};

		poll(&p, 1, 30000);
	}
out:
	if (pidfd >= 0)
		close(pidfd);
	if (fd >= 0)
		close(fd);
	free(e);
	free(mnt);
	return ret;
}

static void print_field(const char *key, const char *sub, json_t *v)
{
	char *s = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY);
	char name[64];

	snprintf(name, sizeof(name), "%s%s%s", key, sub ? "." : "", sub ? sub : "");
	if (!sub && strcmp(key, "started") == 0 && json_is_integer(v)) {
		/* JSON keeps the epoch seconds; a person reads ISO 8601 as the
		 * other times are shown */
		struct timespec ts = {.tv_sec = (time_t)json_integer_value(v)};
		char at[40];

		pfs_fmt_time(&ts, at, sizeof(at));
		free(s);
		printf("%-28s %s\n", name, at);
		return;
	}
	printf("%-28s %s\n", name, s ? s : json_string_value(v));
	free(s);
}

int pfs_cmd_status(const struct pfs_config *cfg)
{
	char *mnt = canonical_noleaf(cfg->mountpoint);
	const char *why = "does not exist";
	static char buf[65536];
	size_t used = 0;
	ssize_t n;
	json_t *o;
	json_error_t jerr;
	int fd = mnt ? pfs_ctl_connect(mnt, &why) : -1;

	free(mnt);
	if (fd == -ENOTCONN) {
		say("%s: its daemon is gone; the mount is dead (every access fails with "
		    "\"Transport endpoint is not connected\"): clear it with `prismfs unmount %s`",
		    cfg->mountpoint, cfg->mountpoint);
		return 1;
	}
	if (fd < 0) {
		say("%s: %s", cfg->mountpoint, why);
		return 1;
	}
	if (send(fd, "status\n", 7, MSG_NOSIGNAL) != 7) {
		say("%s: cannot ask the daemon", cfg->mountpoint);
		close(fd);
		return 1;
	}
	while (used < sizeof(buf) - 1 && (n = recv(fd, buf + used, sizeof(buf) - 1 - used, 0)) > 0)
		used += (size_t)n;
	buf[used] = '\0';
	close(fd);
	o = json_loads(buf, 0, &jerr);
	if (!o) {
		say("%s: the daemon gave no status", cfg->mountpoint);
		return 1;
	}
	if (cfg->json) {
		fputs(buf, stdout);
	} else {
		const char *key;
		json_t *v;

		json_object_foreach(o, key, v) {
			const char *k2;
			json_t *v2;

			if (!json_is_object(v)) {
				print_field(key, NULL, v);
				continue;
			}
			json_object_foreach(v, k2, v2)
				print_field(key, k2, v2);
		}
	}
	json_decref(o);
	return 0;
}
