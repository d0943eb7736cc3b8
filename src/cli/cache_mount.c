/* cache_mount: a mount with --mirror — the memory cache takes SOURCE's
 * place at mount, and writes everything back (or keeps it in a quarantine
 * directory) at the end. */
#include "cli/cache_mount.h"
#include "cli/cmdutil.h"
#include "cache/cache.h"
#include "cache/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Is path a or below it? Both canonical. */
static bool path_within(const char *path, const char *a)
{
	size_t n = strlen(a);

	return strcmp(a, "/") == 0 ||
	       (strncmp(path, a, n) == 0 && (path[n] == '/' || path[n] == '\0'));
}

/* --journal DIR: take it (locked, this mirror's), and replay onto the
 * mirror what a crashed daemon left there, before anything is served. */
static int journal_open(const struct pfs_config *cfg, struct pfs_fs *fs,
			const struct pfs_mirror_opts *mo, struct pfs_journal **j)
{
	char err[PATH_MAX * 2 + 256], *dir = realpath(cfg->journal, NULL);

	if (!dir && errno == ENOENT) { /* to be made: where it would be */
		char *copy = strdup(cfg->journal), *slash = copy ? strrchr(copy, '/') : NULL;
		char *parent = NULL;

		if (copy && slash && slash[1]) {
			*slash = '\0';
			parent = realpath(*copy ? copy : "/", NULL);
		} else if (copy) {
			parent = realpath(".", NULL);
			slash = NULL;
		}
		if (parent && asprintf(&dir, "%s/%s", strcmp(parent, "/") ? parent : "",
				       slash ? slash + 1 : copy) < 0)
			dir = NULL;
		free(parent);
		free(copy);
	}
	if (dir && (path_within(dir, fs->source) || path_within(fs->source, dir) ||
		    (fs->mountpoint && (path_within(dir, fs->mountpoint) ||
					path_within(fs->mountpoint, dir))))) {
		say("journal %s cannot be inside the mirror or the mount point, nor hold them",
		    cfg->journal);
		free(dir);
		return -1;
	}
	free(dir);
	if (pfs_journal_open(j, cfg->journal, fs->source, err, sizeof(err)) < 0 ||
	    pfs_journal_replay(*j, fs->store, fs->source, mo, err, sizeof(err)) < 0) {
		say("%s", err);
		pfs_journal_close(*j);
		*j = NULL;
		return -1;
	}
	return 0;
}

/* --mirror: the memory cache takes SOURCE's place. Its root is a detached
 * memory filesystem nothing else can reach; the store in front of it
 * fills and loads it from the mirror and writes changes back. */
int pfs_cache_mount_open(const struct pfs_config *cfg, struct pfs_fs *fs)
{
	struct pfs_mirror_opts mo = {.s3_endpoint = cfg->s3_endpoint,
				     .s3_region = cfg->s3_region,
				     .s3_profile = cfg->s3_profile};
	struct pfs_cache_opts o = {.mirror = cfg->mirror, .mirror_opts = &mo,
				   .max_dirty = cfg->cache_max_dirty,
				   .delay_ns = (uint64_t)(cfg->write_back * 1e9),
				   .ttl_ns = (uint64_t)(cfg->mirror_ttl * 1e9),
				   .lazy = cfg->lazy_load, .size = cfg->cache_size};
	struct pfs_store *cache;
	struct pfs_journal *j = NULL;
	char err[PATH_MAX + 256];
	bool remote;
	int root, r;

	/* A server's address names it as it is; a directory by its real path
	 * (the journal is one mirror's, and the mount point cannot be in it). */
	remote = pfs_cli_mirror_remote(cfg->mirror);
	if (remote) { /* status and /proc/mounts show it: never its password */
		char shown[PATH_MAX];

		pfs_mirror_shown_address(cfg->mirror, shown, sizeof(shown));
		fs->source = strdup(shown);
	} else {
		fs->source = realpath(cfg->mirror, NULL);
	}
	if (!fs->source) {
		say("mirror %s: %s", cfg->mirror, strerror(errno));
		return -1;
	}
	if (!remote && fs->mountpoint && path_within(fs->mountpoint, fs->source)) {
		say("mount point %s is inside the mirror %s: the write-back would go through "
		    "the mount itself", cfg->mountpoint, fs->source);
		return -1;
	}
	if (cfg->journal && journal_open(cfg, fs, &mo, &j) < 0)
		return -1;
	root = j ? pfs_journal_memfs(j, cfg->cache_size, err, sizeof(err))
		 : pfs_memfs_open(cfg->cache_size, err, sizeof(err));
	if (root < 0) {
		say("%s", err);
		pfs_journal_close(j);
		return -1;
	}
	fs->root_fd = openat(root, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fs->root_fd < 0) {
		say("cannot open the cache: %s", strerror(errno));
		close(root);
		pfs_journal_close(j);
		return -1;
	}
	o.journal = j;
	r = pfs_cache_new(&cache, fs->store, root, &o, err, sizeof(err));
	if (r < 0) {
		say("%s", err);
		pfs_journal_close(j);
		return -1;
	}
	fs->store = cache; /* it owns the store it wraps now */
	fs->cache = cache;
	return 0;
}

int pfs_cache_mount_finish(struct pfs_fs *fs, char *msg, size_t len)
{
	struct pfs_cache_stats cs;
	char *qdir = NULL, stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	int r;

	/* Nothing is dropped: what cannot reach the mirror goes here. */
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	if (asprintf(&qdir, "/var/tmp/prismfs-quarantine.%d.%s", (int)getpid(), stamp) < 0)
		qdir = NULL;
	/* A mirror failing right now gets a short last chance; one that
	 * works gets the time it takes. */
	pfs_cache_stats(fs->cache, &cs);
	r = pfs_cache_finish(fs->cache, (cs.last_err ? 5 : 600) * 1000000000ull, qdir, msg, len);
	free(qdir);
	return r;
}
