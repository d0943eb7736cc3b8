/* cli_mount_check: mount's options once every argument is read — the
 * combinations refused, the defaults that depend on other options (the
 * cache's, the layers' folding together in cli_mount_layers.c). Split
 * from cli_mount.c, whose parser ends here. Pure, as cli_mount.c. */
#include "cli/cli.h"
#include "cli/cli_parse.h"

#include <errno.h>
#include <strings.h>

/* The cache's options belong to --mirror; defaults filled in. */
static int finish_cache(struct pfs_config *cfg, char *err, size_t errlen)
{
	if (!cfg->mirror) {
		if (cfg->cache_opt) {
			pfs_cli_seterr(err, errlen, "%s needs --mirror MIRROR (or -o mirror=MIRROR)",
				       cfg->cache_opt);
			return -EINVAL;
		}
		return 0;
	}
	if (cfg->upper || cfg->nlowers || cfg->layer_opt) {
		pfs_cli_seterr(err, errlen, "--mirror cannot be used with layers (--upper, "
			       "--lower): a cached mount has no SOURCE to lay them over");
		return -EINVAL;
	}
	if ((cfg->s3_endpoint || cfg->s3_region || cfg->s3_profile) &&
	    strncasecmp(cfg->mirror, "s3://", 5) != 0) {
		pfs_cli_seterr(err, errlen, "--s3-endpoint, --s3-region and --s3-profile need an "
			       "s3:// mirror");
		return -EINVAL;
	}
	if (!cfg->cache_size)
		cfg->cache_size = PFS_DEFAULT_CACHE_SIZE;
	if (!cfg->cache_max_dirty)
		cfg->cache_max_dirty = cfg->cache_size / 4;
	if (cfg->cache_max_dirty > cfg->cache_size) {
		pfs_cli_seterr(err, errlen, "--cache-max-dirty cannot be larger than --cache-size");
		return -EINVAL;
	}
	if (cfg->write_back < 0)
		cfg->write_back = PFS_DEFAULT_WRITE_BACK;
	if (cfg->mirror_ttl < 0)
		cfg->mirror_ttl = PFS_DEFAULT_MIRROR_TTL;
	/* The kernel's own cache of names and attributes lasts no longer than
	 * a listing, unless --timeout says otherwise. */
	if (!cfg->timeout_set && cfg->mirror_ttl > 0 && cfg->timeout > cfg->mirror_ttl)
		cfg->timeout = cfg->mirror_ttl;
	return 0;
}

int pfs_cli_finish_mount(struct pfs_config *cfg, char *err, size_t errlen)
{
	int ret;

	if (cfg->volatile_source)
		cfg->timeout = 0;
	if (cfg->private_mount && cfg->allow_other) {
		pfs_cli_seterr(err, errlen, "--private and -o allow_other contradict each other: "
			       "a private mount lets no other user in");
		return -EINVAL;
	}
	if (cfg->history && cfg->upper && (cfg->mirror || cfg->map_path)) {
		pfs_cli_seterr(err, errlen, "--history on a layered mount works without --mirror "
			       "and --map for now");
		return -EINVAL;
	}
	/* Without the cache's journal a kill -9 loses the changes not yet
	 * written back, which the history has recorded as made. */
	if (cfg->history && cfg->mirror && !cfg->journal) {
		pfs_cli_seterr(err, errlen, "--history with --mirror needs --journal DIR (without "
			       "it a kill -9 loses changes the history has recorded)");
		return -EINVAL;
	}
	if (!cfg->history && (cfg->checkpoint_every || cfg->keep || cfg->history_max ||
			      cfg->history_dir_name)) {
		pfs_cli_seterr(err, errlen, "--checkpoint-every, --keep, --history-max and "
			       "--history-dir-name need "
			       "--history DIR");
		return -EINVAL;
	}
	ret = finish_cache(cfg, err, errlen);
	if (ret < 0)
		return ret;
	ret = pfs_cli_finish_layers(cfg, err, errlen);
	if (ret == 0 && cfg->history && !cfg->upper && (cfg->nlowers || cfg->layer_opt)) {
		pfs_cli_seterr(err, errlen, "--history on a mount of lowers only: nothing can "
			       "change there (give --upper DIR)");
		return -EINVAL;
	}
	/* The past of a layered mount is the upper's laid over the lowers,
	 * merged without redirects (layers/layer_past.c). */
	if (ret == 0 && cfg->history && cfg->upper && cfg->action != PFS_ACT_PRESERVE) {
		pfs_cli_seterr(err, errlen, "--history with --upper keeps the upper at unmount "
			       "(--on-unmount preserve): its past is the upper's");
		return -EINVAL;
	}
	if (ret == 0 && cfg->history && cfg->upper &&
	    (cfg->redirect == PFS_REDIR_ON || cfg->metacopy || cfg->ndata)) {
		pfs_cli_seterr(err, errlen, "--history with --upper works without %s for now",
			       cfg->metacopy ? "-o metacopy=on"
			       : cfg->ndata ? "data-only lower layers"
					    : "-o redirect_dir=on");
		return -EINVAL;
	}
	return ret;
}
