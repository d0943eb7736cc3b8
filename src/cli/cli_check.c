#include "cli/cli_check.h"

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 || errno != ENOENT;
}

int pfs_cli_fuse_dev(const char **hint)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	*hint = "";
	if (fd < 0) {
		/* libfuse opens it before it would call fusermount3 */
		if (errno == EACCES || errno == EPERM)
			*hint = " (a user other than root needs it mode 0666)";
		return -errno;
	}
	close(fd);
	return 0;
}

int pfs_cli_check_command(const struct pfs_config *cfg, char *err, size_t errlen)
{
	if (!cfg->maybe_cmd || exists(cfg->maybe_cmd))
		return 0;
	seterr(err, errlen, "unknown command '%s' (see prismfs --help)", cfg->maybe_cmd);
	return -EINVAL;
}

/* libfuse's refusal, e.g. "fuse: unknown option(s): `-o nodiratime'", in
 * our words: the option without the quotes libfuse puts around it. */
static char fuse_said[512];

static void keep_fuse_msg(enum fuse_log_level level, const char *fmt, va_list ap)
{
	size_t n = strlen(fuse_said);

	/* libfuse writes one line in pieces (the unknown options one by one) */
	if (level <= FUSE_LOG_ERR && n < sizeof(fuse_said) - 1)
		vsnprintf(fuse_said + n, sizeof(fuse_said) - n, fmt, ap);
}

static void say_refusal(char *err, size_t errlen)
{
	char *open, *close;
	const char *opt = NULL;

	fuse_said[strcspn(fuse_said, "\n")] = '\0';
	open = strchr(fuse_said, '`');
	if (open && (close = strrchr(open, '\'')) != NULL) {
		*close = '\0';
		opt = open + 1;
		if (strncmp(opt, "-o ", 3) == 0)
			opt += 3;
	}
	if (opt && strstr(fuse_said, "unknown option"))
		seterr(err, errlen, "unknown mount option -o %s (see prismfs mount --help)", opt);
	else if (opt)
		seterr(err, errlen, "bad value in mount option -o %s (see prismfs mount --help)",
		       opt);
	else
		seterr(err, errlen, "bad mount options: %s",
		       strncmp(fuse_said, "fuse: ", 6) == 0 ? fuse_said + 6 : fuse_said);
}

/* Ask libfuse itself, without mounting, so that its verdict comes before
 * the daemon starts (a refusal is then bad usage, not a failed mount). */
static int check_fuse_opts(const char *opts, char *err, size_t errlen)
{
	char *argv[] = {"prismfs", "-o", (char *)opts, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	struct fuse_lowlevel_ops ops;
	struct fuse_session *se;

	memset(&ops, 0, sizeof(ops));
	fuse_said[0] = '\0';
	fuse_set_log_func(keep_fuse_msg);
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	fuse_set_log_func(NULL);
	fuse_opt_free_args(&args);
	if (se) {
		fuse_session_destroy(se);
		return 0;
	}
	say_refusal(err, errlen);
	return -EINVAL;
}

const char *pfs_cli_access_opts(const struct pfs_config *cfg)
{
	if (!cfg->default_permissions)
		return ""; /* then the daemon, acting as root, would check nothing */
	/* -o allow_other, when given, is among the -o options already */
	if (geteuid() == 0 && !cfg->private_mount && !cfg->allow_other)
		return ",default_permissions,allow_other";
	return ",default_permissions";
}

int pfs_cli_check_mount(const struct pfs_config *cfg, char *err, size_t errlen)
{
	if (cfg->cmd != PFS_CMD_MOUNT)
		return 0;
	if (cfg->upper_from_opt && !cfg->noptlowers && !cfg->nlowers && cfg->source &&
	    !exists(cfg->source)) {
		seterr(err, errlen, "upperdir= needs lowerdir= (the layers below it): none was "
		       "given, and SOURCE %s does not exist", cfg->source);
		return -EINVAL;
	}
	return cfg->fuse_opts ? check_fuse_opts(cfg->fuse_opts, err, errlen) : 0;
}
