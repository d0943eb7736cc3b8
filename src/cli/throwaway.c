/* throwaway: see throwaway.h. */
#include "cli/throwaway.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What this mount made (NULL: nothing), owned here. */
static char *made_upper, *made_mp;
/* The default work directory beside a made upper (.NAME.prismfs-work, as
 * layer_life.c names it), when it was not there before either. */
static char *made_work;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if ((flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
		fprintf(stderr, "prismfs: cannot remove %s: %s\n", path, strerror(errno));
	return 0;
}

/* The upper was made by this mount, so all below it is the mount's. */
static void remove_upper(void)
{
	if (made_upper)
		nftw(made_upper, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
	if (made_work)
		nftw(made_work, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
	free(made_upper);
	free(made_work);
	made_upper = made_work = NULL;
}

/* The work directory the daemon will make beside the made upper, if it
 * is not there already (a leftover is never ours to remove). */
static void note_work(const struct pfs_config *cfg)
{
	const char *slash = strrchr(made_upper, '/');
	struct stat st;

	if (cfg->work || !slash || slash == made_upper)
		return;
	if (asprintf(&made_work, "%.*s/.%s.prismfs-work", (int)(slash - made_upper), made_upper,
		     slash + 1) < 0) {
		made_work = NULL;
		return;
	}
	if (lstat(made_work, &st) == 0) {
		free(made_work);
		made_work = NULL;
	}
}

/* The mount point is empty once unmounted: rmdir, never more. */
static void remove_mp(void)
{
	if (made_mp && rmdir(made_mp) < 0 && errno != ENOENT)
		fprintf(stderr, "prismfs: cannot remove the mount point %s: %s\n", made_mp,
			strerror(errno));
	free(made_mp);
	made_mp = NULL;
}

/* $XDG_CACHE_HOME/prismfs or ~/.cache/prismfs, made as needed (parents
 * that are missing are made too and kept: a cache directory is shared). */
static int cache_dir(char *buf, size_t len)
{
	const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	int n;

	if (x && *x == '/')
		n = snprintf(buf, len, "%s/prismfs", x);
	else if (home && *home)
		n = snprintf(buf, len, "%s/.cache/prismfs", home);
	else
		return -ENOENT;
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int make_mountpoint(struct pfs_config *cfg)
{
	char dir[PATH_MAX], tmpl[PATH_MAX + 32];
	const char *t = getenv("TMPDIR");
	int r = 0;

	if (strcmp(cfg->new_mountpoint, "cache") == 0)
		r = cache_dir(dir, sizeof(dir));
	else
		snprintf(dir, sizeof(dir), "%s", t && *t == '/' ? t : "/tmp");
	if (r < 0) {
		fprintf(stderr, "prismfs: cannot make a cache directory for the mount point: %s\n",
			strerror(-r));
		return r;
	}
	snprintf(tmpl, sizeof(tmpl), "%s/prismfs-mnt-XXXXXX", dir);
	if (!mkdtemp(tmpl)) {
		r = -errno;
		fprintf(stderr, "prismfs: cannot make a mount point in %s: %s\n", dir,
			strerror(errno));
		return r;
	}
	made_mp = strdup(tmpl);
	if (!made_mp) {
		rmdir(tmpl);
		return -ENOMEM;
	}
	cfg->mountpoint = made_mp;
	return 0;
}

int pfs_throwaway_prepare(struct pfs_config *cfg)
{
	int r;

	if (cfg->default_upper && cfg->upper) {
		if (mkdir(cfg->upper, 0755) == 0) {
			/* absolute: the daemon works from / */
			made_upper = realpath(cfg->upper, NULL);
			if (!made_upper)
				return -ENOMEM;
			note_work(cfg);
		} else if (errno != EEXIST) {
			r = -errno;
			fprintf(stderr, "prismfs: cannot make the upper %s: %s\n", cfg->upper,
				strerror(errno));
			return r;
		}
	}
	if (cfg->new_mountpoint && !cfg->mountpoint) {
		r = make_mountpoint(cfg);
		if (r < 0) {
			remove_upper();
			return r;
		}
	}
	return 0;
}

char *pfs_throwaway_after_mount(bool ok)
{
	char *mp = ok && made_mp ? strdup(made_mp) : NULL;

	if (!ok) {
		remove_mp();
		remove_upper();
	}
	/* either way, the daemon (or nobody) owns them now */
	free(made_mp);
	free(made_upper);
	free(made_work);
	made_mp = made_upper = made_work = NULL;
	return mp;
}

void pfs_throwaway_finish(enum pfs_action a, bool ran, int r)
{
	bool all = ran && r == 0 &&
		   (a == PFS_ACT_DISCARD || a == PFS_ACT_COMMIT || a == PFS_ACT_COMMIT_ATOMIC);

	if (all || (ran && a != PFS_ACT_DISCARD && a != PFS_ACT_COMMIT &&
		    a != PFS_ACT_COMMIT_ATOMIC))
		remove_mp();
	if (all)
		remove_upper();
	free(made_mp);
	free(made_upper);
	free(made_work);
	made_mp = made_upper = made_work = NULL;
}
