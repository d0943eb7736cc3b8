/* cli: the commands and the dispatch from argv[1]; the small commands'
 * arguments here, mount's in cli_mount.c, the usage texts in cli_usage.c.
 * Pure: no I/O. */
#include "cli/cli.h"
#include "cli/cli_parse.h"
#include "util/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pfs_cli_seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

int pfs_cli_push_dir(const char ***arr, size_t *n, const char *dir)
{
	const char **a = realloc(*arr, (*n + 1) * sizeof(*a));

	if (!a)
		return -ENOMEM;
	a[(*n)++] = dir;
	*arr = a;
	return 0;
}

static const char *const whiteout_names[] = {
	[PFS_WH_AUTO] = "auto",
	[PFS_WH_CHARDEV] = "chardev",
	[PFS_WH_FILE] = "file",
};

int pfs_cli_set_whiteout(struct pfs_config *cfg, const char *v, const char *what, char *err,
			 size_t errlen)
{
	for (size_t i = 0; v && i < PFS_ARRAY_SIZE(whiteout_names); i++) {
		if (strcmp(v, whiteout_names[i]) == 0) {
			cfg->whiteout = (enum pfs_whiteout)i;
			if (!cfg->layer_opt)
				cfg->layer_opt = what;
			return 0;
		}
	}
	pfs_cli_seterr(err, errlen, "%s must be auto, chardev or file, not %s", what,
		       v && *v ? v : "an empty value");
	return -EINVAL;
}

/* --name=value or --name value; returns the value or NULL. */
const char *pfs_cli_optval(int argc, char **argv, int *i, const char *arg, const char *name,
			   bool *matched)
{
	size_t n = strlen(name);

	*matched = false;
	if (strncmp(arg, name, n) != 0)
		return NULL;
	if (arg[n] == '=') {
		*matched = true;
		return arg + n + 1;
	}
	if (arg[n] != '\0')
		return NULL;
	*matched = true;
	if (*i + 1 >= argc)
		return NULL;
	return argv[++*i];
}

static int parse_target(int argc, char **argv, int start, struct pfs_config *cfg, char *err,
			size_t errlen, const char *cmd)
{
	for (int i = start; i < argc; i++) {
		const char *a = argv[i], *v;
		bool m = false;

		if (strcmp(a, "--json") == 0 && cfg->cmd == PFS_CMD_STATUS) {
			cfg->json = true;
		} else if (cfg->cmd == PFS_CMD_UNMOUNT &&
			   ((v = pfs_cli_optval(argc, argv, &i, a, "--action", &m)) || m)) {
			if (pfs_action_parse(v, &cfg->action) < 0) {
				pfs_cli_seterr(err, errlen, "--action must be preserve, discard, "
					       "commit or commit-atomic, not '%s'", v ? v : "");
				return -EINVAL;
			}
		} else if (strcmp(a, "--force") == 0 && cfg->cmd == PFS_CMD_UNMOUNT) {
			cfg->force = true;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			if (cfg->cmd == PFS_CMD_STATUS) {
				cfg->cmd = PFS_CMD_STATUS_HELP;
				cfg->usage = pfs_status_usage;
			} else if (cfg->cmd == PFS_CMD_SYNC) {
				cfg->cmd = PFS_CMD_SYNC_HELP;
				cfg->usage = pfs_sync_usage;
			} else {
				cfg->cmd = PFS_CMD_UNMOUNT_HELP;
				cfg->usage = pfs_unmount_usage;
			}
			return 0;
		} else if (a[0] == '-' && a[1]) {
			pfs_cli_seterr(err, errlen, "unknown option '%s' for %s (see prismfs %s "
				       "--help)", a, cmd, cmd);
			return -EINVAL;
		} else if (cfg->mountpoint) {
			pfs_cli_seterr(err, errlen, "unexpected argument '%s'", a);
			return -EINVAL;
		} else {
			cfg->mountpoint = a;
		}
	}
	if (!cfg->mountpoint) {
		pfs_cli_seterr(err, errlen, "missing MOUNTPOINT (usage: prismfs %s MOUNTPOINT)",
			       cmd);
		return -EINVAL;
	}
	return 0;
}

/* commit, discard, recover: named options only. */
static int parse_layers(int argc, char **argv, int start, struct pfs_config *cfg, char *err,
			size_t errlen, const char *cmd)
{
	bool commit = cfg->cmd == PFS_CMD_COMMIT, discard = cfg->cmd == PFS_CMD_DISCARD;
	bool recover = cfg->cmd == PFS_CMD_RECOVER;

	for (int i = start; i < argc; i++) {
		const char *a = argv[i], *v, **slot = NULL, *name = NULL;
		bool m;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			cfg->cmd = PFS_CMD_LAYERS_HELP;
			cfg->usage = pfs_layers_usage;
			return 0;
		} else if (commit && strcmp(a, "--atomic") == 0) {
			cfg->atomic = true;
			continue;
		} else if ((commit || discard) &&
			   ((v = pfs_cli_optval(argc, argv, &i, a, "--upper", &m)) || m)) {
			slot = &cfg->upper;
			name = "--upper";
		} else if ((commit || recover) &&
			   ((v = pfs_cli_optval(argc, argv, &i, a, "--lower", &m)) || m)) {
			/* commit: the first is the top lower, the others are
			 * the lowers below it, as stacked at mount */
			if (commit && cfg->lower && v && *v) {
				if (pfs_cli_push_dir(&cfg->lowers, &cfg->nlowers, v) < 0) {
					pfs_cli_seterr(err, errlen, "out of memory");
					return -ENOMEM;
				}
				continue;
			}
			slot = &cfg->lower;
			name = "--lower";
		} else if (commit &&
			   ((v = pfs_cli_optval(argc, argv, &i, a, "--whiteout", &m)) || m)) {
			int ret = pfs_cli_set_whiteout(cfg, v, "--whiteout", err, errlen);

			if (ret < 0)
				return ret;
			continue;
		} else if ((commit || discard) &&
			   ((v = pfs_cli_optval(argc, argv, &i, a, "--work", &m)) || m)) {
			slot = &cfg->work;
			name = "--work";
		} else if (a[0] == '-' && a[1]) {
			pfs_cli_seterr(err, errlen, "unknown option '%s' for %s (see prismfs %s "
				       "--help)", a, cmd, cmd);
			return -EINVAL;
		} else {
			pfs_cli_seterr(err, errlen, "unexpected argument '%s' (prismfs %s takes "
				       "named options)", a, cmd);
			return -EINVAL;
		}
		if (!v || !*v) {
			pfs_cli_seterr(err, errlen, "%s needs a directory", name);
			return -EINVAL;
		}
		if (*slot) {
			pfs_cli_seterr(err, errlen, "%s given twice", name);
			return -EINVAL;
		}
		*slot = v;
	}
	if ((commit || discard) && !cfg->upper) {
		pfs_cli_seterr(err, errlen, "missing --upper (usage: prismfs %s --upper U%s)", cmd,
			       commit ? " --lower L" : "");
		return -EINVAL;
	}
	if ((commit || recover) && !cfg->lower) {
		pfs_cli_seterr(err, errlen, "missing --lower (usage: prismfs %s%s --lower L)", cmd,
			       commit ? " --upper U" : "");
		return -EINVAL;
	}
	return 0;
}

/* `help CMD`: the help of CMD, as CMD --help gives it. */
static int parse_help(int argc, char **argv, struct pfs_config *cfg, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		enum pfs_cmd cmd;
		const char *usage;
	} topics[] = {
		{"help", PFS_CMD_HELP, pfs_usage},
		{"mount", PFS_CMD_MOUNT_HELP, pfs_mount_usage},
		{"unmount", PFS_CMD_UNMOUNT_HELP, pfs_unmount_usage},
		{"umount", PFS_CMD_UNMOUNT_HELP, pfs_unmount_usage},
		{"status", PFS_CMD_STATUS_HELP, pfs_status_usage},
		{"sync", PFS_CMD_SYNC_HELP, pfs_sync_usage},
		{"commit", PFS_CMD_LAYERS_HELP, pfs_layers_usage},
		{"discard", PFS_CMD_LAYERS_HELP, pfs_layers_usage},
		{"recover", PFS_CMD_LAYERS_HELP, pfs_layers_usage},
		{"log", PFS_CMD_STATUS_HELP, pfs_log_usage},
		{"snapshot", PFS_CMD_STATUS_HELP, pfs_snapshot_usage},
		{"snapshots", PFS_CMD_STATUS_HELP, pfs_snapshot_usage},
		{"versions", PFS_CMD_STATUS_HELP, pfs_versions_usage},
		{"diff", PFS_CMD_STATUS_HELP, pfs_diff_usage},
		{"restore", PFS_CMD_STATUS_HELP, pfs_restore_usage},
		{"prune", PFS_CMD_STATUS_HELP, pfs_prune_usage},
		{"export", PFS_CMD_STATUS_HELP, pfs_export_usage},
	};

	cfg->cmd = PFS_CMD_HELP;
	cfg->usage = pfs_usage;
	if (argc < 3)
		return 0;
	if (argc > 3) {
		pfs_cli_seterr(err, errlen, "unexpected argument '%s' (usage: prismfs help "
			       "[COMMAND])", argv[3]);
		return -EINVAL;
	}
	/* help's own help is the general help, which says what help does */
	if (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)
		return 0;
	for (size_t i = 0; i < PFS_ARRAY_SIZE(topics); i++) {
		if (strcmp(argv[2], topics[i].name) == 0) {
			cfg->cmd = topics[i].cmd;
			cfg->usage = topics[i].usage;
			return 0;
		}
	}
	pfs_cli_seterr(err, errlen, "unknown command '%s' (see prismfs --help)", argv[2]);
	return -EINVAL;
}

/* Is there a -o among argv[from..] (before any "--")? */
static bool has_o(int argc, char **argv, int from)
{
	for (int i = from; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strncmp(argv[i], "-o", 2) == 0)
			return true;
	}
	return false;
}

/* A first word that may be a SOURCE (the mount(8) helper form): a path
 * by its spelling, or any word when mount.fuse's -o comes along. */
static bool source_by_form(int argc, char **argv)
{
	const char *c = argv[1];

	if (strchr(c, '/') || strcmp(c, ".") == 0 || strcmp(c, "..") == 0)
		return true;
	return has_o(argc, argv, 2);
}

int pfs_cli_parse(int argc, char **argv, struct pfs_config *cfg, char *err, size_t errlen)
{
	const char *c;

	memset(cfg, 0, sizeof(*cfg));
	cfg->timeout = PFS_DEFAULT_TIMEOUT;
	cfg->lazy_load = true;
	cfg->write_back = -1; /* not given */
	cfg->mirror_ttl = -1;
	cfg->threads = 16;
	cfg->default_permissions = true;
	cfg->squash_uid = cfg->squash_gid = -1;
	cfg->map_max = PFS_DEFAULT_MAP_MAX;
	err[0] = '\0';
	if (argc < 2) {
		pfs_cli_seterr(err, errlen, "missing command (see prismfs --help)");
		return -EINVAL;
	}
	c = argv[1];
	if (strcmp(c, "-h") == 0 || strcmp(c, "--help") == 0) {
		cfg->cmd = PFS_CMD_HELP;
		cfg->usage = pfs_usage;
		return 0;
	}
	if (strcmp(c, "help") == 0)
		return parse_help(argc, argv, cfg, err, errlen);
	if (strcmp(c, "-V") == 0 || strcmp(c, "--version") == 0 || strcmp(c, "version") == 0) {
		cfg->cmd = PFS_CMD_VERSION;
		return 0;
	}
	if (strcmp(c, "mount") == 0) {
		cfg->cmd = PFS_CMD_MOUNT;
		return pfs_cli_parse_mount(argc, argv, 2, false, cfg, err, errlen);
	}
	if (strcmp(c, "unmount") == 0 || strcmp(c, "umount") == 0) {
		cfg->cmd = PFS_CMD_UNMOUNT;
		return parse_target(argc, argv, 2, cfg, err, errlen, "unmount");
	}
	if (strcmp(c, "status") == 0) {
		cfg->cmd = PFS_CMD_STATUS;
		return parse_target(argc, argv, 2, cfg, err, errlen, "status");
	}
	if (strcmp(c, "sync") == 0) {
		cfg->cmd = PFS_CMD_SYNC;
		return parse_target(argc, argv, 2, cfg, err, errlen, "sync");
	}
	if (strcmp(c, "commit") == 0 || strcmp(c, "discard") == 0 || strcmp(c, "recover") == 0) {
		cfg->cmd = c[0] == 'c' ? PFS_CMD_COMMIT : c[0] == 'd' ? PFS_CMD_DISCARD
								     : PFS_CMD_RECOVER;
		return parse_layers(argc, argv, 2, cfg, err, errlen, c);
	}
	if (c[0] != '-') {
		/* mount(8) helper convention: prismfs SOURCE MOUNTPOINT -o OPTS.
		 * A bare word without -o may be a mistyped command instead. */
		if (!source_by_form(argc, argv))
			cfg->maybe_cmd = c;
		cfg->cmd = PFS_CMD_MOUNT;
		return pfs_cli_parse_mount(argc, argv, 1, false, cfg, err, errlen);
	}
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--mountpoint", 12) == 0 || strncmp(argv[i], "--target", 8) == 0) {
			cfg->cmd = PFS_CMD_MOUNT;
			return pfs_cli_parse_mount(argc, argv, 1, true, cfg, err, errlen);
		}
	}
	if (has_o(argc, argv, 1)) {
		/* fuse-overlayfs's synopsis: prismfs [-f] -o lowerdir=...
		 * MOUNTPOINT (or any mount with its options first) */
		cfg->cmd = PFS_CMD_MOUNT;
		return pfs_cli_parse_mount(argc, argv, 1, false, cfg, err, errlen);
	}
	pfs_cli_seterr(err, errlen, "unknown option '%s' (see prismfs --help)", c);
	return -EINVAL;
}

void pfs_config_free(struct pfs_config *cfg)
{
	free(cfg->fuse_opts);
	cfg->fuse_opts = NULL;
	free(cfg->lowers);
	cfg->lowers = NULL;
	cfg->nlowers = 0;
	free(cfg->optlowers);
	cfg->optlowers = NULL;
	cfg->noptlowers = 0;
	free(cfg->datalowers);
	cfg->datalowers = NULL;
	cfg->ndatalowers = 0;
	cfg->ndata = 0;
	for (size_t i = 0; i < cfg->nstrs; i++)
		free(cfg->strs[i]);
	free(cfg->strs);
	cfg->strs = NULL;
	cfg->nstrs = 0;
}
