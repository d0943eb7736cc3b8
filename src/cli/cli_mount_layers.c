/* cli_mount_layers: mount's layer options — --upper/upperdir=,
 * --work/workdir=, --lower, --whiteout, --on-unmount, --default-upper,
 * --new-mountpoint — and their folding together once every argument is
 * read (SOURCE and lowerdir= as the kernel orders them), --data-lower. Setters of
 * cli_mount.c's one option table. Pure, as cli_mount.c. */
#include "cli/cli.h"
#include "cli/cli_parse.h"
#include "util/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SHOWN(v) ((v) && *(v) ? (v) : "an empty value")

/* --upper, upperdir=, --work, workdir=: each names one directory once. */
static int set_dir(struct pfs_config *cfg, const char **slot, const char *v, const char *what,
		   char *err, size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "%s needs a directory", what);
		return -EINVAL;
	}
	if (*slot) {
		pfs_cli_seterr(err, errlen, "the %s directory is given twice (%s and %s)",
			       slot == &cfg->upper ? "upper" : "work", *slot, v);
		return -EINVAL;
	}
	*slot = v;
	if (slot != &cfg->upper && !cfg->layer_opt)
		cfg->layer_opt = what;
	return 0;
}

static int set_action(struct pfs_config *cfg, const char *v, const char *what, char *err,
		      size_t errlen)
{
	if (pfs_action_parse(v, &cfg->action) < 0) {
		pfs_cli_seterr(err, errlen, "%s must be preserve, discard, commit or commit-atomic, "
			       "not %s", what, SHOWN(v));
		return -EINVAL;
	}
	if (!cfg->layer_opt)
		cfg->layer_opt = what;
	return 0;
}

/* SOURCE given with lowerdir=: a label ("none", as mount(8) lines have it,
 * or any word without a '/'), or the same directory as lowerdir's first. */
static bool same_dir_name(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);

	while (na > 1 && a[na - 1] == '/')
		na--;
	while (nb > 1 && b[nb - 1] == '/')
		nb--;
	return na == nb && strncmp(a, b, na) == 0;
}

/* A SOURCE spelled as a path (else a label, as mount(8) lines have). */
bool pfs_cli_has_slash(const char *s)
{
	return strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0;
}

/* No upper: with lowers (lowerdir=A:B or --lower), a read-only merge of
 * them, as the kernel mounts lowerdir=A:B alone; the options that only
 * mean something for an upper are refused. */
static int lowers_only(struct pfs_config *cfg, char *err, size_t errlen)
{
	const char *only_upper = cfg->work ? "workdir= (--work)"
				 : cfg->whiteout != PFS_WH_AUTO ? "whiteout= (--whiteout)"
				 : cfg->action != PFS_ACT_NONE ? "on_unmount= (--on-unmount)"
				 : cfg->lower_pt ? "lower_passthrough (--lower-passthrough)" : NULL;

	if (!cfg->layer_opt)
		return 0;
	if (!cfg->nlowers || only_upper) {
		pfs_cli_seterr(err, errlen, "%s needs an upper directory (--upper DIR or "
			       "upperdir=DIR)%s", only_upper ? only_upper : cfg->layer_opt,
			       cfg->nlowers ? "" : "; a read-only mount of lowers only needs two "
			       "or more (lowerdir=A:B)");
		return -EINVAL;
	}
	cfg->read_only = true; /* nothing to write to: EROFS, as the kernel's */
	return 0;
}

/* After all arguments: fold lowerdir= into SOURCE and the lowers, and
 * check that the layer options come with an upper. */
int pfs_cli_finish_layers(struct pfs_config *cfg, char *err, size_t errlen)
{
	if (cfg->optadd && !cfg->noptlowers) {
		pfs_cli_seterr(err, errlen, "datadir+= needs a lowerdir+= before it (at least one "
			       "regular lower layer, as the kernel's)");
		return -EINVAL;
	}
	if (cfg->noptlowers) {
		const char *src = cfg->source;

		if (cfg->nlowers) {
			pfs_cli_seterr(err, errlen, "give the lower layers with --lower or with "
				       "lowerdir=, not both");
			return -EINVAL;
		}
		if (src && pfs_cli_has_slash(src) && !same_dir_name(src, cfg->optlowers[0])) {
			pfs_cli_seterr(err, errlen, "SOURCE %s is not lowerdir's first directory "
				       "%s (with lowerdir=, give none as SOURCE)", src,
				       cfg->optlowers[0]);
			return -EINVAL;
		}
		cfg->source = cfg->optlowers[0];
		for (size_t i = 1; i < cfg->noptlowers; i++)
			if (pfs_cli_push_dir(&cfg->lowers, &cfg->nlowers, cfg->optlowers[i]) < 0)
				return -ENOMEM;
	}
	/* Data-only layers go last, below every regular one (the kernel
	 * allows no regular layer after them). */
	if (cfg->ndatalowers && !cfg->ndata) {
		for (size_t i = 0; i < cfg->ndatalowers; i++)
			if (pfs_cli_push_dir(&cfg->lowers, &cfg->nlowers, cfg->datalowers[i]) < 0)
				return -ENOMEM;
		cfg->ndata = cfg->ndatalowers;
	}
	if (cfg->default_upper && pfs_cli_default_upper(cfg, err, errlen) < 0)
		return -EINVAL;
	/* As the kernel's: metacopy finds moved files' data by redirects, so
	 * it turns redirect_dir=on on, and conflicts with any other. */
	if (cfg->metacopy && !cfg->redirect_given && !cfg->map_path)
		cfg->redirect = PFS_REDIR_ON;
	if (cfg->metacopy && (cfg->redirect != PFS_REDIR_ON || cfg->map_path)) {
		pfs_cli_seterr(err, errlen, "-o metacopy=on %s (the data of a moved file is found "
			       "by its redirect)", cfg->map_path ? "cannot be used with --map"
							      : "needs redirect_dir=on");
		return -EINVAL;
	}
	if (cfg->map_path && cfg->redirect != PFS_REDIR_OFF) {
		pfs_cli_seterr(err, errlen, "-o redirect_dir=%s cannot be used with --map: the "
			       "paths of a mapping table are not those of the lowers, so no "
			       "redirect can name them (use redirect_dir=off)",
			       cfg->redirect == PFS_REDIR_ON ? "on" : "follow");
		return -EINVAL;
	}
	if (cfg->upper_from_opt && !cfg->noptlowers && !cfg->nlowers && cfg->source &&
	    strcmp(cfg->source, "none") == 0) {
		pfs_cli_seterr(err, errlen, "upperdir= needs lowerdir= (the layers below it; or a "
			       "SOURCE directory instead of none)");
		return -EINVAL;
	}
	if (!cfg->upper)
		return lowers_only(cfg, err, errlen);
	if (cfg->read_only || cfg->mount_ro) {
		pfs_cli_seterr(err, errlen, "%s cannot be used with an upper directory: the upper "
			       "is where changes go (mount without --upper for a read-only view)",
			       cfg->read_only ? "--read-only" : "-o ro");
		return -EINVAL;
	}
	if (cfg->action == PFS_ACT_NONE)
		cfg->action = PFS_ACT_PRESERVE;
	return 0;
}

/* --upper, or the kernel's upperdir= (which may stand without lowerdir=
 * only beside a SOURCE: finish_layers checks). */
int pfs_cli_opt_upper(struct pfs_config *cfg, const char *v, const char *what, char *err,
		     size_t errlen)
{
	if (what[0] != '-')
		cfg->upper_from_opt = true;
	return set_dir(cfg, &cfg->upper, v, what, err, errlen);
}

int pfs_cli_opt_work(struct pfs_config *cfg, const char *v, const char *what, char *err,
		    size_t errlen)
{
	return set_dir(cfg, &cfg->work, v, what, err, errlen);
}

int pfs_cli_opt_lower(struct pfs_config *cfg, const char *v, const char *what, char *err,
		     size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "%s needs a directory", what);
		return -EINVAL;
	}
	if (pfs_cli_push_dir(&cfg->lowers, &cfg->nlowers, v) < 0)
		return -ENOMEM;
	if (!cfg->layer_opt)
		cfg->layer_opt = what;
	return 0;
}

/* --data-lower: a data-only layer below every --lower (lowerdir=A::D). */
int pfs_cli_opt_data_lower(struct pfs_config *cfg, const char *v, const char *what, char *err,
			  size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "%s needs a directory", what);
		return -EINVAL;
	}
	if (cfg->optdata) {
		pfs_cli_seterr(err, errlen, "give the data-only layers with --data-lower or with "
			       "datadir+= or after '::' in lowerdir=, not both");
		return -EINVAL;
	}
	if (pfs_cli_push_dir(&cfg->datalowers, &cfg->ndatalowers, v) < 0)
		return -ENOMEM;
	if (!cfg->layer_opt)
		cfg->layer_opt = what;
	return 0;
}

int pfs_cli_opt_whiteout(struct pfs_config *cfg, const char *v, const char *what, char *err,
			size_t errlen)
{
	return pfs_cli_set_whiteout(cfg, v, what, err, errlen);
}

int pfs_cli_opt_default_upper(struct pfs_config *cfg, const char *v, const char *what,
			     char *err, size_t errlen)
{
	(void)v;
	(void)err;
	(void)errlen;
	cfg->default_upper = true;
	if (!cfg->layer_opt)
		cfg->layer_opt = what;
	return 0;
}

int pfs_cli_opt_new_mountpoint(struct pfs_config *cfg, const char *v, const char *what,
			      char *err, size_t errlen)
{
	if (!v || (strcmp(v, "tmp") != 0 && strcmp(v, "cache") != 0)) {
		pfs_cli_seterr(err, errlen, "%s must be tmp or cache, not %s", what, SHOWN(v));
		return -EINVAL;
	}
	cfg->new_mountpoint = v;
	return 0;
}

int pfs_cli_opt_on_unmount(struct pfs_config *cfg, const char *v, const char *what, char *err,
			  size_t errlen)
{
	return set_action(cfg, v, what, err, errlen);
}
