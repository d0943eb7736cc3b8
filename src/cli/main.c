/* prismfs: program entry — parse, then hand the command to its runner. */
#include "cli/cli.h"
#include "cli/cli_check.h"
#include "cli/commit_cmd.h"
#include "cli/daemon.h"
#include "cli/history_cmd.h"
#include "cli/throwaway.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* A mount, with what throwaway.c makes for it; a made mount point's path
 * is printed on stdout once it answers (with -f: before it serves). */
static int mount_cmd(struct pfs_config *cfg)
{
	char *made;
	int ret;

	if (pfs_throwaway_prepare(cfg) < 0)
		return 1;
	if (cfg->new_mountpoint && cfg->foreground) {
		printf("%s\n", cfg->mountpoint);
		fflush(stdout);
	}
	ret = pfs_cmd_mount(cfg);
	made = pfs_throwaway_after_mount(ret == 0);
	/* the parent that forked the daemon, not the daemon once done */
	if (made && !cfg->foreground && pfs_daemon_pid > 0) {
		printf("%s\n", made);
		fflush(stdout);
	}
	free(made);
	return ret;
}

int main(int argc, char **argv)
{
	struct pfs_config cfg;
	char err[256];
	int ret;

	if (argc >= 2 && pfs_history_cmd_is(argv[1]))
		return pfs_history_cmd(argc, argv);
	ret = pfs_cli_parse(argc, argv, &cfg, err, sizeof(err));
	/* A mistyped command is named as such, whatever its arguments. */
	if (pfs_cli_check_command(&cfg, err, sizeof(err)) < 0 ||
	    (ret == 0 && pfs_cli_check_mount(&cfg, err, sizeof(err)) < 0))
		ret = -EINVAL;
	if (ret < 0) {
		fprintf(stderr, "prismfs: %s\n", err);
		pfs_config_free(&cfg);
		return 2;
	}
	switch (cfg.cmd) {
	case PFS_CMD_HELP:
	case PFS_CMD_MOUNT_HELP:
	case PFS_CMD_LAYERS_HELP:
	case PFS_CMD_UNMOUNT_HELP:
	case PFS_CMD_STATUS_HELP:
	case PFS_CMD_SYNC_HELP:
		fputs(cfg.usage ? cfg.usage : pfs_usage, stdout);
		ret = 0;
		break;
	case PFS_CMD_VERSION:
		printf("prismfs %s\n", PRISMFS_VERSION);
		ret = 0;
		break;
	case PFS_CMD_MOUNT:
		ret = mount_cmd(&cfg);
		break;
	case PFS_CMD_UNMOUNT:
		ret = pfs_cmd_unmount(&cfg);
		break;
	case PFS_CMD_STATUS:
		ret = pfs_cmd_status(&cfg);
		break;
	case PFS_CMD_SYNC:
		ret = pfs_cmd_sync(&cfg);
		break;
	case PFS_CMD_COMMIT:
		ret = pfs_cmd_commit(&cfg);
		break;
	case PFS_CMD_DISCARD:
		ret = pfs_cmd_discard(&cfg);
		break;
	case PFS_CMD_RECOVER:
		ret = pfs_cmd_recover(&cfg);
		break;
	default:
		ret = 2;
	}
	pfs_config_free(&cfg);
	return ret;
}
