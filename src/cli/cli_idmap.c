/* cli_idmap: mount's --uidmapping/uidmapping= and --gidmapping/gidmapping=,
 * fuse-overlayfs's id mapping for rootless containers (util/idmap.h says
 * what the ranges mean; the view applies them). Setters of cli_mount.c's
 * one option table. Pure, as cli_mount.c. */
#include "cli/cli.h"
#include "cli/cli_parse.h"
#include "util/idmap.h"

#include <errno.h>

static int set_map(struct pfs_idmap *m, const char *v, const char *what, char *err,
		   size_t errlen)
{
	char why[128];

	if (pfs_idmap_parse(v, m, why, sizeof(why)) < 0) {
		pfs_cli_seterr(err, errlen, "%s needs CONTAINERID:HOSTID:SIZE[:...], not %s: %s",
			       what, v && *v ? v : "an empty value", why);
		return -EINVAL;
	}
	return 0;
}

int pfs_cli_opt_uidmapping(struct pfs_config *cfg, const char *v, const char *what, char *err,
			   size_t errlen)
{
	return set_map(&cfg->idmap[0], v, what, err, errlen);
}

int pfs_cli_opt_gidmapping(struct pfs_config *cfg, const char *v, const char *what, char *err,
			   size_t errlen)
{
	return set_map(&cfg->idmap[1], v, what, err, errlen);
}
