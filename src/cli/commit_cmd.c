#include "cli/commit_cmd.h"
#include "commit/commit.h"
#include "commit/failrec.h"
#include "store/store.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Room for a message naming a few paths. */
#define ERRLEN (3 * PATH_MAX)

static int report(int ret, const char *err)
{
	if (ret == 0)
		return 0;
	fprintf(stderr, "prismfs: %s\n", err);
	return 1;
}

/* U's changes are now applied or gone: a record of an unmount action that
 * failed on it earlier (failrec.h) reports nothing true any more. */
static void resolved(const char *upper)
{
	char *canon = realpath(upper, NULL);

	if (canon)
		pfs_failrec_clear(canon);
	free(canon);
}

/* What was done, in the words of `prismfs unmount --action` (layer_life.c),
 * with the directories as canonical paths. */
static void said_done(const char *verb, const char *upper, const char *lower, bool atomic)
{
	char *u = realpath(upper, NULL), *l = lower ? realpath(lower, NULL) : NULL;

	if (lower)
		printf("%s %s to %s%s\n", verb, u ? u : upper, l ? l : lower,
		       atomic ? " atomically" : "");
	else
		printf("%s the changes in %s\n", verb, u ? u : upper);
	free(u);
	free(l);
}

/* The store the command works through (store/store.h); NULL after saying
 * why not. */
static struct pfs_store *store(void)
{
	char err[256];
	struct pfs_store *st = pfs_store_default(err, sizeof(err));

	if (!st)
		fprintf(stderr, "prismfs: %s\n", err);
	return st;
}

int pfs_cmd_commit(const struct pfs_config *cfg)
{
	struct pfs_store *st = store();
	struct pfs_commit_opts o = {
		.upper = cfg->upper,
		.lower = cfg->lower,
		.below = cfg->lowers,
		.nbelow = cfg->nlowers,
		.whiteout = cfg->whiteout,
		.work = cfg->work,
		.atomic = cfg->atomic,
		.progress = isatty(STDERR_FILENO),
		.store = st,
	};
	static char err[ERRLEN];
	int ret;

	if (!st)
		return 2;
	ret = pfs_commit(&o, err, sizeof(err));
	pfs_store_free(st);

	if (ret == 0) {
		resolved(cfg->upper);
		said_done("committed", cfg->upper, cfg->lower, cfg->atomic);
	}
	return report(ret, err);
}

int pfs_cmd_discard(const struct pfs_config *cfg)
{
	static char err[ERRLEN];
	struct pfs_store *st = store();
	int ret;

	if (!st)
		return 2;
	ret = pfs_discard(st, cfg->upper, cfg->work, err, sizeof(err));
	pfs_store_free(st);

	if (ret == 0) {
		resolved(cfg->upper);
		said_done("discarded", cfg->upper, NULL, false);
	}
	return report(ret, err);
}

int pfs_cmd_recover(const struct pfs_config *cfg)
{
	static char err[ERRLEN];
	enum pfs_recovery done;
	struct pfs_store *st = store();
	int ret;

	if (!st)
		return 2;
	ret = pfs_commit_recover(st, cfg->lower, &done, err, sizeof(err));
	pfs_store_free(st);

	if (ret < 0)
		return report(ret, err);
	switch (done) {
	case PFS_RECOVERY_NONE:
		printf("no interrupted commit of %s\n", cfg->lower);
		break;
	case PFS_RECOVERY_ROLLED_BACK:
		printf("rolled back the interrupted commit of %s: "
		       "the old tree stays, the upper is kept\n", cfg->lower);
		break;
	case PFS_RECOVERY_FINISHED:
		printf("finished the interrupted commit of %s: "
		       "the new tree stays, the upper is emptied\n", cfg->lower);
		break;
	case PFS_RECOVERY_COMPLETED:
		printf("completed the interrupted in-place commit of %s: "
		       "it holds the committed view, the upper is emptied\n", cfg->lower);
		break;
	}
	return 0;
}
