/* lib: the C API of include/prismfs.h, a thin layer over the commands. A
 * configuration is kept as the `prismfs mount` command line it stands for;
 * mounting parses that line with the command's own parser and runs the
 * command's own code, so defaults, checks and errors are the same. */
#include "prismfs.h"

#include "cli/cli.h"
#include "cli/cli_check.h"
#include "cli/cli_parse.h"
#include "cli/daemon.h"
#include "cli/throwaway.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PFS_API __attribute__((visibility("default")))

struct prismfs_config {
	char *source;
	char **args; /* options, as the command line has them */
	size_t nargs;
	bool upper;
	bool new_mountpoint; /* "new-mountpoint": the mount makes its mount point */
	bool mirror;         /* "mirror": the mirror takes the source's place */
};

struct prismfs_mount {
	char *mountpoint;
	pid_t daemon;
	bool upper;
};

static _Thread_local char last_error[PFS_SAID_LEN];

static int fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	return err;
}

PFS_API const char *prismfs_last_error(void)
{
	return last_error;
}

PFS_API prismfs_config *prismfs_config_new(void)
{
	return calloc(1, sizeof(struct prismfs_config));
}

PFS_API void prismfs_config_free(prismfs_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->nargs; i++)
		free(cfg->args[i]);
	free(cfg->args);
	free(cfg->source);
	free(cfg);
}

static int add_arg(prismfs_config *cfg, const char *a)
{
	char **n = realloc(cfg->args, (cfg->nargs + 1) * sizeof(*n));
	char *s = strdup(a);

	if (n)
		cfg->args = n;
	if (!n || !s) {
		free(s);
		return fail(-ENOMEM, "out of memory");
	}
	cfg->args[cfg->nargs++] = s;
	return 0;
}

static int add_opt(prismfs_config *cfg, const char *flag, const char *value)
{
	int r = add_arg(cfg, flag);

	if (r == 0 && value && (r = add_arg(cfg, value)) < 0)
		free(cfg->args[--cfg->nargs]);
	return r;
}

PFS_API int prismfs_config_set_source(prismfs_config *cfg, const char *path)
{
	char *s;

	if (!cfg || !path || !*path)
		return fail(-EINVAL, "the source must be a path");
	s = strdup(path);
	if (!s)
		return fail(-ENOMEM, "out of memory");
	free(cfg->source);
	cfg->source = s;
	return 0;
}

static int path_opt(prismfs_config *cfg, const char *flag, const char *path)
{
	if (!cfg || !path || !*path)
		return fail(-EINVAL, "%s must be a path", flag);
	return add_opt(cfg, flag, path);
}

PFS_API int prismfs_config_set_upper(prismfs_config *cfg, const char *path)
{
	int r = path_opt(cfg, "--upper", path);

	if (r == 0)
		cfg->upper = true;
	return r;
}

PFS_API int prismfs_config_set_work(prismfs_config *cfg, const char *path)
{
	return path_opt(cfg, "--work", path);
}

PFS_API int prismfs_config_add_lower(prismfs_config *cfg, const char *path)
{
	return path_opt(cfg, "--lower", path);
}

PFS_API int prismfs_config_add_data_lower(prismfs_config *cfg, const char *path)
{
	return path_opt(cfg, "--data-lower", path);
}

PFS_API int prismfs_config_set_option(prismfs_config *cfg, const char *key, const char *value)
{
	/* The options with no function of their own (the layers have theirs):
	 * each becomes --KEY, taken the way mount's table says (a value, a
	 * flag, a flag or on|off) and checked by its parser at mount. */
	static const char *const keys[] = {
		"read-only", "volatile", "no-default-permissions", "passthrough", "uring", "map",
		"map-max", "log", "log-format", "timeout", "threads", "whiteout", "on-unmount",
		"default-upper", "lower-passthrough", "new-mountpoint", "private", "node-fds",
		/* owners shown */
		"squash-to-root", "squash-to-uid", "squash-to-gid", "uidmapping", "gidmapping",
		/* the memory cache */
		"mirror", "cache-size", "cache-max-dirty", "cache-max-write-size", "lazy-load", "write-back", "journal",
		"mirror-ttl", "s3-endpoint", "s3-region", "s3-profile",
		/* the history */
		"history", "checkpoint-every", "keep", "history-max", "history-dir-name"};
	char flag[64];
	size_t i;
	int kind;

	if (!cfg || !key)
		return fail(-EINVAL, "no option name");
	if (strcmp(key, "o") == 0) {
		if (!value || !*value)
			return fail(-EINVAL, "option o needs a value");
		return add_opt(cfg, "-o", value);
	}
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(key, keys[i]) == 0)
			break;
	snprintf(flag, sizeof(flag), "--%s", key);
	kind = i < sizeof(keys) / sizeof(keys[0]) ? pfs_cli_mount_opt_kind(flag) : -1;
	switch (kind) {
	case PFS_OPT_FLAG:
		if (value && strcmp(value, "1") != 0)
			return fail(-EINVAL, "option %s takes no value", key);
		if (strcmp(key, "default-upper") == 0)
			cfg->upper = true;
		return add_opt(cfg, flag, NULL);
	case PFS_OPT_ON_OFF:
		/* NULL or "1" is "on"; any other value goes to the parser
		 * (on|off), checked at mount. */
		if (value && !*value)
			return fail(-EINVAL, "option %s takes on or off", key);
		snprintf(flag, sizeof(flag), "--%s=%s", key,
			 !value || strcmp(value, "1") == 0 ? "on" : value);
		return add_opt(cfg, flag, NULL);
	case PFS_OPT_VALUE:
		if (!value)
			return fail(-EINVAL, "option %s needs a value", key);
		if (strcmp(key, "new-mountpoint") == 0)
			cfg->new_mountpoint = true;
		if (strcmp(key, "mirror") == 0)
			cfg->mirror = true;
		return add_opt(cfg, flag, value);
	default:
		return fail(-EINVAL, "unknown option %s", key);
	}
}

/* A directory the mount names (SOURCE, the mount point, the upper, a
 * lower) that does not exist: the mount failed for want of it. */
static bool names_missing(const struct pfs_config *pc)
{
	const char *dirs[] = {pc->source, pc->mountpoint, pc->upper};
	struct stat st;

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (dirs[i] && lstat(dirs[i], &st) < 0 && errno == ENOENT)
			return true;
	for (size_t i = 0; i < pc->nlowers; i++)
		if (lstat(pc->lowers[i], &st) < 0 && errno == ENOENT)
			return true;
	return false;
}

#define RUN_MISSING 3 /* run(): failed, and a directory it names is missing */

/* Run the command line argv (argc entries) in this process: parse it as
 * main() does, then run it with its lines kept for prismfs_last_error and
 * off stderr. Returns the command's exit status (2: bad usage), or
 * RUN_MISSING. */
static int run(int argc, char **argv, bool mount, char **made)
{
	struct pfs_config pc;
	char err[256];
	pid_t self = getpid();
	mode_t mask;
	int ret;

	if (pfs_cli_parse(argc, argv, &pc, err, sizeof(err)) < 0 ||
	    (mount && pfs_cli_check_mount(&pc, err, sizeof(err)) < 0)) {
		pfs_config_free(&pc);
		fail(0, "%s", err);
		return 2;
	}
	if (pc.debug) {
		/* The trace keeps the daemon in the foreground, on our stderr:
		 * prismfs_mount would never return, and the library prints
		 * nothing. */
		pfs_config_free(&pc);
		fail(0, "-o debug is for the command line (prismfs mount -d): the library "
		     "prints nothing");
		return 2;
	}
	pfs_said[0] = '\0';
	pfs_say_quiet_pid = self;
	pfs_daemon_pid = 0;
	mask = umask(0);
	umask(mask); /* the mount sets umask 0 for itself; keep the caller's */
	if (mount && pfs_throwaway_prepare(&pc) < 0)
		ret = 1;
	else
		ret = mount ? pfs_cmd_mount(&pc) : pfs_cmd_unmount(&pc);
	if (getpid() != self)
		_exit(ret); /* the forked daemon, done serving: never the caller's code */
	if (mount) {
		*made = pfs_throwaway_after_mount(ret == 0);
		if (pc.new_mountpoint)
			pc.mountpoint = NULL; /* it was the made one, now freed */
	}
	umask(mask);
	pfs_say_quiet_pid = 0;
	if (ret != 0) {
		fail(0, "%s", pfs_said[0] ? pfs_said : "failed");
		if (mount && names_missing(&pc))
			ret = RUN_MISSING;
	}
	pfs_config_free(&pc);
	return ret;
}

PFS_API int prismfs_mount(const prismfs_config *cfg, const char *mountpoint, prismfs_mount_t **out)
{
	prismfs_mount_t *m = NULL;
	char **argv = NULL, *made = NULL, real[PATH_MAX];
	int argc = 0, r;

	if (!out)
		return fail(-EINVAL, "no place for the mount");
	*out = NULL;
	if (!cfg || (!cfg->source && !cfg->mirror))
		return fail(-EINVAL, "no source set");
	if ((!mountpoint || !*mountpoint) && !cfg->new_mountpoint)
		return fail(-EINVAL, "no mount point given");
	if (mountpoint && *mountpoint && cfg->new_mountpoint)
		return fail(-EINVAL, "option new-mountpoint makes the mount point: give none");
	argv = calloc(cfg->nargs + 5, sizeof(*argv));
	m = calloc(1, sizeof(*m));
	if (!argv || !m) {
		r = fail(-ENOMEM, "out of memory");
		goto out;
	}
	argv[argc++] = (char *)"prismfs";
	argv[argc++] = (char *)"mount";
	for (size_t i = 0; i < cfg->nargs; i++)
		argv[argc++] = cfg->args[i];
	if (cfg->source)
		argv[argc++] = cfg->source; /* with a mirror, the command's label or refusal */
	if (!cfg->new_mountpoint) {
		argv[argc++] = (char *)mountpoint;
		/* Named before mounting: the directory is plain now. */
		if (realpath(mountpoint, real))
			m->mountpoint = strdup(real);
	}
	r = run(argc, argv, true, &made);
	if (made) {
		free(m->mountpoint);
		m->mountpoint = realpath(made, real) ? strdup(real) : made;
		if (m->mountpoint != made)
			free(made);
	}
	if (r != 0) {
		r = r == 2 ? -EINVAL : r == RUN_MISSING ? -ENOENT : -EIO;
		goto out;
	}
	if (!m->mountpoint && mountpoint && realpath(mountpoint, real))
		m->mountpoint = strdup(real);
	m->daemon = pfs_daemon_pid;
	m->upper = cfg->upper;
	if (!m->mountpoint) {
		/* Mounted, but we cannot even name it: take it down again. */
		r = fail(-ENOMEM, "out of memory");
		prismfs_unmount(m, PRISMFS_ON_UNMOUNT); /* frees m */
		m = NULL;
		goto out;
	}
	*out = m;
	m = NULL;
out:
	if (m)
		free(m->mountpoint);
	free(m);
	free(argv);
	return r;
}

PFS_API const char *prismfs_mount_point(const prismfs_mount_t *m)
{
	return m ? m->mountpoint : NULL;
}

PFS_API int prismfs_unmount(prismfs_mount_t *m, enum prismfs_action action)
{
	static const char *const names[] = {
		[PRISMFS_PRESERVE] = "preserve", [PRISMFS_DISCARD] = "discard",
		[PRISMFS_COMMIT] = "commit", [PRISMFS_COMMIT_ATOMIC] = "commit-atomic"};
	char *argv[5] = {(char *)"prismfs", (char *)"unmount"};
	int argc = 2, r, status;

	if (!m)
		return fail(-EINVAL, "no mount");
	if ((int)action < 0 || action > PRISMFS_COMMIT_ATOMIC)
		return fail(-EINVAL, "unknown unmount action %d", (int)action);
	if (!m->upper && action > PRISMFS_PRESERVE)
		return fail(-EINVAL, "%s has no upper directory: nothing to %s", m->mountpoint,
			    names[action]);
	if (m->upper && action != PRISMFS_ON_UNMOUNT) {
		argv[argc++] = (char *)"--action";
		argv[argc++] = (char *)names[action];
	}
	argv[argc++] = m->mountpoint;
	r = run(argc, argv, false, NULL);
	if (r != 0 && m->daemon > 0 && waitpid(m->daemon, &status, WNOHANG) == 0)
		return -EBUSY; /* the daemon still serves: still mounted */
	if (r == 0 && m->daemon > 0)
		waitpid(m->daemon, &status, 0);
	free(m->mountpoint);
	free(m);
	return r == 0 ? 0 : -EIO;
}
