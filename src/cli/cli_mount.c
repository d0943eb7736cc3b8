/* cli_mount: mount's command line — its options, in one table that gives
 * each its --long spelling and its -o key (cli_oopts.c reads the -o list
 * and asks this table for the keys it does not know), the positional
 * words. The layer options in both spellings (--upper/--lower/... and the
 * kernel's upperdir=/lowerdir=/...) and their folding together once all
 * arguments are read are in cli_mount_layers.c; the combinations refused
 * then, in cli_mount_check.c. Pure, as cli.c. */
#include "cli/cli.h"
#include "cli/cli_parse.h"
#include "history/history.h"
#include "util/util.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A value as an error message shows it (no quotes: they would look like
 * part of an -o list). */
#define SHOWN(v) ((v) && *(v) ? (v) : "an empty value")

/* "auto", "on", "off" -> 0, 1, 2 (the order of both tri-state enums), or -1. */
static int auto_on_off(const char *v)
{
	static const char *const words[] = {"auto", "on", "off"};

	for (int k = 0; v && k < 3; k++)
		if (strcmp(v, words[k]) == 0)
			return k;
	return -1;
}

/* An option's setter: v is its value (NULL: missing at the end of argv;
 * for a flag, NULL), what the option as the user spelled it ("--log-format"
 * or "log_format=", static: it may be kept to name the option later). */
typedef int mount_opt_fn(struct pfs_config *cfg, const char *v, const char *what, char *err,
			 size_t errlen);

static int opt_log_format(struct pfs_config *cfg, const char *v, const char *what, char *err,
			  size_t errlen)
{
	if (v && strcmp(v, "text") == 0) {
		cfg->log_format = PFS_LOG_TEXT;
	} else if (v && strcmp(v, "json") == 0) {
		cfg->log_format = PFS_LOG_JSON;
	} else {
		pfs_cli_seterr(err, errlen, "%s must be text or json, not %s", what, SHOWN(v));
		return -EINVAL;
	}
	return 0;
}

static int opt_passthrough(struct pfs_config *cfg, const char *v, const char *what, char *err,
			   size_t errlen)
{
	int t = auto_on_off(v);

	if (t < 0) {
		pfs_cli_seterr(err, errlen, "%s must be auto, on or off, not %s", what, SHOWN(v));
		return -EINVAL;
	}
	cfg->passthrough = (enum pfs_passthrough)t;
	return 0;
}

static int opt_uring(struct pfs_config *cfg, const char *v, const char *what, char *err,
		     size_t errlen)
{
	int t = auto_on_off(v);

	if (t < 0) {
		pfs_cli_seterr(err, errlen, "%s must be auto, on or off, not %s", what, SHOWN(v));
		return -EINVAL;
	}
	cfg->uring = (enum pfs_uring_opt)t;
	return 0;
}

static int opt_log(struct pfs_config *cfg, const char *v, const char *what, char *err,
		   size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "%s needs a file name or -", what);
		return -EINVAL;
	}
	cfg->log_path = v;
	return 0;
}

static int opt_timeout(struct pfs_config *cfg, const char *v, const char *what, char *err,
		       size_t errlen)
{
	if (pfs_parse_seconds(v, &cfg->timeout) < 0) {
		pfs_cli_seterr(err, errlen, "%s needs a number of seconds, not %s", what, SHOWN(v));
		return -EINVAL;
	}
	cfg->timeout_set = true;
	return 0;
}

static int opt_map_max(struct pfs_config *cfg, const char *v, const char *what, char *err,
		       size_t errlen)
{
	if (pfs_parse_size(v, &cfg->map_max) < 0 || cfg->map_max == 0) {
		pfs_cli_seterr(err, errlen, "%s needs a size in bytes (K, M, G allowed), not %s",
			       what, SHOWN(v));
		return -EINVAL;
	}
	return 0;
}

/* --map, and PassthroughFS's --mapping_file (or --mapping-file). */
static int opt_map(struct pfs_config *cfg, const char *v, const char *what, char *err,
		   size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "%s needs a file name", what);
		return -EINVAL;
	}
	cfg->map_path = v;
	return 0;
}

static int opt_mountpoint(struct pfs_config *cfg, const char *v, const char *what, char *err,
			  size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "%s needs a directory", what);
		return -EINVAL;
	}
	cfg->mountpoint = v;
	return 0;
}

static int opt_target(struct pfs_config *cfg, const char *v, const char *what, char *err,
		      size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "%s needs a directory", what);
		return -EINVAL;
	}
	cfg->source = v;
	return 0;
}

static int opt_threads(struct pfs_config *cfg, const char *v, const char *what, char *err,
		       size_t errlen)
{
	if (pfs_parse_long(v, 1, 1024, &cfg->threads) < 0) {
		pfs_cli_seterr(err, errlen, "%s needs a number from 1 to 1024, not %s", what,
			       SHOWN(v));
		return -EINVAL;
	}
	return 0;
}

static int opt_node_fds(struct pfs_config *cfg, const char *v, const char *what, char *err,
			size_t errlen)
{
	if (pfs_parse_long(v, 16, 1L << 30, &cfg->node_fds) < 0) {
		pfs_cli_seterr(err, errlen, "%s needs a number from 16 to %ld, not %s", what,
			       1L << 30, SHOWN(v));
		return -EINVAL;
	}
	return 0;
}

/* Is v a remote mirror's address (http(s)://, dav(s)://, s3://)? */
bool pfs_cli_mirror_remote(const char *v)
{
	static const char *const schemes[] = {"http://", "https://", "dav://", "davs://",
					      "s3://"};

	for (size_t i = 0; v && i < PFS_ARRAY_SIZE(schemes); i++)
		if (strncasecmp(v, schemes[i], strlen(schemes[i])) == 0)
			return v[strlen(schemes[i])] != '\0';
	return false;
}

/* --mirror DIR, file:///DIR, or a server's address. */
static int opt_mirror(struct pfs_config *cfg, const char *v, const char *what, char *err,
		      size_t errlen)
{
	if (v && strncmp(v, "file://", 7) == 0)
		v += 7;
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "%s needs a directory, file:///DIR, http(s)://, "
			       "dav(s):// or s3:// address", what);
		return -EINVAL;
	}
	if (strstr(v, "://") && !pfs_cli_mirror_remote(v)) {
		pfs_cli_seterr(err, errlen, "%s %s: a mirror is a directory, file:///DIR, "
			       "http(s)://HOST/PATH, dav(s)://HOST/PATH or s3://BUCKET[/PREFIX]",
			       what, v);
		return -EINVAL;
	}
	cfg->mirror = v;
	return 0;
}

/* --s3-endpoint, --s3-region, --s3-profile: an s3:// mirror's. */
static int opt_s3(struct pfs_config *cfg, const char *v, const char *what, char *err,
		  size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "%s needs a value", what);
		return -EINVAL;
	}
	if (strstr(what, "endpoint")) {
		if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
			pfs_cli_seterr(err, errlen, "%s %s: not an http:// or https:// URL", what,
				       v);
			return -EINVAL;
		}
		cfg->s3_endpoint = v;
	} else if (strstr(what, "region")) {
		cfg->s3_region = v;
	} else {
		cfg->s3_profile = v;
	}
	if (!cfg->cache_opt)
		cfg->cache_opt = what;
	return 0;
}

/* A cache size: K, M or G; a bare number is MiB, as mem-fuse has it. */
static int cache_bytes(const char *v, const char *what, size_t *out, char *err, size_t errlen)
{
	size_t n;

	if (v && *v && strspn(v, "0123456789") == strlen(v) && strlen(v) < 10)
		n = (size_t)strtoul(v, NULL, 10) << 20;
	else if (!v || pfs_parse_size(v, &n) < 0)
		n = 0;
	if (n < ((size_t)1 << 20)) {
		pfs_cli_seterr(err, errlen, "%s needs a size of at least 1M (K, M, G; a bare "
			       "number is MiB), not %s", what, SHOWN(v));
		return -EINVAL;
	}
	*out = n;
	return 0;
}

static int opt_cache_size(struct pfs_config *cfg, const char *v, const char *what, char *err,
			  size_t errlen)
{
	if (!cfg->cache_opt)
		cfg->cache_opt = what;
	return cache_bytes(v, what, &cfg->cache_size, err, errlen);
}

/* --cache-max-dirty, and mem-fuse's --cache-max-write-size. */
static int opt_cache_dirty(struct pfs_config *cfg, const char *v, const char *what, char *err,
			   size_t errlen)
{
	if (!cfg->cache_opt)
		cfg->cache_opt = what;
	return cache_bytes(v, what, &cfg->cache_max_dirty, err, errlen);
}

static int opt_mirror_ttl(struct pfs_config *cfg, const char *v, const char *what, char *err,
			  size_t errlen)
{
	if (!cfg->cache_opt)
		cfg->cache_opt = what;
	if (pfs_parse_seconds(v, &cfg->mirror_ttl) < 0 || cfg->mirror_ttl > 31536000) {
		pfs_cli_seterr(err, errlen, "%s needs a number of seconds (0: never list again), "
			       "not %s", what, SHOWN(v));
		return -EINVAL;
	}
	return 0;
}

static int opt_write_back(struct pfs_config *cfg, const char *v, const char *what, char *err,
			  size_t errlen)
{
	if (!cfg->cache_opt)
		cfg->cache_opt = what;
	if (pfs_parse_seconds(v, &cfg->write_back) < 0 || cfg->write_back > 86400) {
		pfs_cli_seterr(err, errlen, "%s needs a delay in seconds (0 to 86400), not %s",
			       what, SHOWN(v));
		return -EINVAL;
	}
	return 0;
}

/* --lazy-load: mem-fuse's flag (v NULL), or on|off. */
static int opt_lazy_load(struct pfs_config *cfg, const char *v, const char *what, char *err,
			 size_t errlen)
{
	if (v && strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
		pfs_cli_seterr(err, errlen, "%s takes on or off, not %s", what, SHOWN(v));
		return -EINVAL;
	}
	cfg->lazy_load = !v || strcmp(v, "on") == 0;
	return 0;
}

static int opt_lower_pt(struct pfs_config *cfg, const char *v, const char *what, char *err,
			size_t errlen)
{
	if (v && strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
		pfs_cli_seterr(err, errlen, "%s takes on or off, not %s", what, SHOWN(v));
		return -EINVAL;
	}
	cfg->lower_pt = !v || strcmp(v, "on") == 0;
	/* Only an upper can copy up: without one lower files already are. */
	if (cfg->lower_pt && !cfg->layer_opt)
		cfg->layer_opt = what;
	return 0;
}

static int opt_read_only(struct pfs_config *cfg, const char *v, const char *what, char *err,
			 size_t errlen)
{
	cfg->read_only = true;
	return 0;
}

static int opt_volatile(struct pfs_config *cfg, const char *v, const char *what, char *err,
			size_t errlen)
{
	cfg->volatile_source = true;
	return 0;
}

static int opt_no_default_perms(struct pfs_config *cfg, const char *v, const char *what,
				char *err, size_t errlen)
{
	cfg->default_permissions = false;
	return 0;
}

static int opt_private(struct pfs_config *cfg, const char *v, const char *what, char *err,
		       size_t errlen)
{
	cfg->private_mount = true;
	return 0;
}

static int opt_squash_root(struct pfs_config *cfg, const char *v, const char *what, char *err,
			   size_t errlen)
{
	cfg->squash_uid = cfg->squash_gid = 0;
	return 0;
}

static int squash_id(const char *v, const char *what, long long *out, char *err, size_t errlen)
{
	char *end;
	unsigned long long id;

	errno = 0;
	id = v && *v >= '0' && *v <= '9' ? strtoull(v, &end, 10) : 0;
	if (!v || *v < '0' || *v > '9' || *end || errno || id >= (uid_t)-1) {
		pfs_cli_seterr(err, errlen, "%s needs a numeric id below 4294967295, not '%s'", what,
			       v ? v : "");
		return -EINVAL;
	}
	*out = (long long)id;
	return 0;
}

static int opt_squash_uid(struct pfs_config *cfg, const char *v, const char *what, char *err,
			  size_t errlen)
{
	return squash_id(v, what, &cfg->squash_uid, err, errlen);
}

static int opt_squash_gid(struct pfs_config *cfg, const char *v, const char *what, char *err,
			  size_t errlen)
{
	return squash_id(v, what, &cfg->squash_gid, err, errlen);
}

static int opt_journal(struct pfs_config *cfg, const char *v, const char *what, char *err,
		       size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "%s needs a local directory", what);
		return -EINVAL;
	}
	cfg->journal = v;
	if (!cfg->cache_opt)
		cfg->cache_opt = what;
	return 0;
}

static int opt_history(struct pfs_config *cfg, const char *v, const char *what, char *err,
		       size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "%s needs a local directory", what);
		return -EINVAL;
	}
	cfg->history = v;
	return 0;
}

static int opt_checkpoint(struct pfs_config *cfg, const char *v, const char *what, char *err,
			  size_t errlen)
{
	long long ns;

	if (pfs_hist_parse_duration(v, &ns) < 0) {
		pfs_cli_seterr(err, errlen, "%s needs a duration like 30s, 15m, 1h or 1d, not '%s'",
			       what, v ? v : "");
		return -EINVAL;
	}
	cfg->checkpoint_every = v;
	return 0;
}

static int opt_keep(struct pfs_config *cfg, const char *v, const char *what, char *err,
		    size_t errlen)
{
	struct pfs_hist_policy pol;

	(void)what;
	pfs_hist_policy_init(&pol);
	if (pfs_hist_parse_keep(v, &pol, err, errlen) < 0)
		return -EINVAL;
	cfg->keep = v;
	return 0;
}

static int opt_history_max(struct pfs_config *cfg, const char *v, const char *what, char *err,
			   size_t errlen)
{
	unsigned long long b;

	if (pfs_hist_parse_size(v, &b) < 0) {
		pfs_cli_seterr(err, errlen, "%s needs a size like 512M or 2G, not '%s'", what,
			       v ? v : "");
		return -EINVAL;
	}
	cfg->history_max = v;
	return 0;
}

static int opt_history_dir_name(struct pfs_config *cfg, const char *v, const char *what,
				char *err, size_t errlen)
{
	if (!v || !pfs_valid_name(v) || strlen(v) > NAME_MAX) {
		pfs_cli_seterr(err, errlen, "%s needs a file name (no '/', not . or ..), not '%s'",
			       what, v ? v : "");
		return -EINVAL;
	}
	cfg->history_dir_name = v;
	return 0;
}

/* Every option of mount but -f, -d and -o: its --long name, its -o key
 * (so that /etc/fstab and mount -t fuse.prismfs reach it; "key=" when it
 * takes a value, NULL for none) and its setter. The kernel overlay
 * options with a meaning of their own (lowerdir=, index=, ...) are in
 * cli_oopts.c. */
static const struct mount_opt {
	const char *name;
	const char *key;
	enum pfs_opt_kind kind;
	bool compat;            /* PassthroughFS's spelling only */
	mount_opt_fn *set;
} mount_opts[] = {
	{"--log-format", "log_format=", PFS_OPT_VALUE, false, opt_log_format},
	{"--passthrough", "passthrough=", PFS_OPT_VALUE, false, opt_passthrough},
	{"--uring", "uring=", PFS_OPT_VALUE, false, opt_uring},
	{"--log", "log=", PFS_OPT_VALUE, false, opt_log},
	{"--timeout", "timeout=", PFS_OPT_VALUE, false, opt_timeout},
	{"--map-max", "map_max=", PFS_OPT_VALUE, false, opt_map_max},
	{"--map", "map=", PFS_OPT_VALUE, false, opt_map},
	{"--mapping_file", NULL, PFS_OPT_VALUE, false, opt_map},
	{"--mapping-file", NULL, PFS_OPT_VALUE, false, opt_map},
	{"--mountpoint", NULL, PFS_OPT_VALUE, true, opt_mountpoint},
	{"--target", NULL, PFS_OPT_VALUE, true, opt_target},
	{"--read-only", "read_only", PFS_OPT_FLAG, false, opt_read_only},
	{"--volatile", "volatile", PFS_OPT_FLAG, false, opt_volatile},
	{"--no-default-permissions", "nodefault_permissions", PFS_OPT_FLAG, false,
	 opt_no_default_perms},
	{"--private", "private", PFS_OPT_FLAG, false, opt_private},
	{"--squash-to-root", "squash_to_root", PFS_OPT_FLAG, false, opt_squash_root},
	{"--squash-to-uid", "squash_to_uid=", PFS_OPT_VALUE, false, opt_squash_uid},
	{"--squash-to-gid", "squash_to_gid=", PFS_OPT_VALUE, false, opt_squash_gid},
	{"--uidmapping", "uidmapping=", PFS_OPT_VALUE, false, pfs_cli_opt_uidmapping},
	{"--gidmapping", "gidmapping=", PFS_OPT_VALUE, false, pfs_cli_opt_gidmapping},
	{"--threads", "threads=", PFS_OPT_VALUE, false, opt_threads},
	{"--node-fds", "node_fds=", PFS_OPT_VALUE, false, opt_node_fds},
	/* layers (lowerdir= is the kernel's list, SOURCE first: cli_oopts.c) */
	{"--upper", "upperdir=", PFS_OPT_VALUE, false, pfs_cli_opt_upper},
	{"--work", "workdir=", PFS_OPT_VALUE, false, pfs_cli_opt_work},
	{"--lower", NULL, PFS_OPT_VALUE, false, pfs_cli_opt_lower},
	{"--data-lower", NULL, PFS_OPT_VALUE, false, pfs_cli_opt_data_lower},
	{"--whiteout", "whiteout=", PFS_OPT_VALUE, false, pfs_cli_opt_whiteout},
	{"--on-unmount", "on_unmount=", PFS_OPT_VALUE, false, pfs_cli_opt_on_unmount},
	{"--lower-passthrough", "lower_passthrough", PFS_OPT_ON_OFF, false, opt_lower_pt},
	{"--default-upper", "default_upper", PFS_OPT_FLAG, false, pfs_cli_opt_default_upper},
	{"--new-mountpoint", "new_mountpoint=", PFS_OPT_VALUE, false, pfs_cli_opt_new_mountpoint},
	/* the memory cache */
	{"--mirror", "mirror=", PFS_OPT_VALUE, false, opt_mirror},
	{"--cache-size", "cache_size=", PFS_OPT_VALUE, false, opt_cache_size},
	{"--cache-max-dirty", "cache_max_dirty=", PFS_OPT_VALUE, false, opt_cache_dirty},
	{"--cache-max-write-size", NULL, PFS_OPT_VALUE, false, opt_cache_dirty},
	{"--lazy-load", "lazy_load", PFS_OPT_ON_OFF, false, opt_lazy_load},
	{"--write-back", "write_back=", PFS_OPT_VALUE, false, opt_write_back},
	{"--journal", "journal=", PFS_OPT_VALUE, false, opt_journal},
	{"--mirror-ttl", "mirror_ttl=", PFS_OPT_VALUE, false, opt_mirror_ttl},
	{"--s3-endpoint", "s3_endpoint=", PFS_OPT_VALUE, false, opt_s3},
	{"--s3-region", "s3_region=", PFS_OPT_VALUE, false, opt_s3},
	{"--s3-profile", "s3_profile=", PFS_OPT_VALUE, false, opt_s3},
	{"--history", "history=", PFS_OPT_VALUE, false, opt_history},
	{"--checkpoint-every", "checkpoint_every=", PFS_OPT_VALUE, false, opt_checkpoint},
	{"--keep", "keep=", PFS_OPT_VALUE, false, opt_keep},
	{"--history-max", "history_max=", PFS_OPT_VALUE, false, opt_history_max},
	{"--history-dir-name", "history_dir_name=", PFS_OPT_VALUE, false, opt_history_dir_name},
};

/* argv[*i] as an option of the table (*i moves past a separate value);
 * 1 if it is one, 0 if not, or -errno. */
static int mount_opt(struct pfs_config *cfg, bool compat, int argc, char **argv, int *i,
		     char *err, size_t errlen)
{
	const char *a = argv[*i], *v;
	bool m;
	int r;

	for (size_t k = 0; k < PFS_ARRAY_SIZE(mount_opts); k++) {
		const struct mount_opt *o = &mount_opts[k];
		size_t n = strlen(o->name);

		if (o->compat && !compat)
			continue;
		switch (o->kind) {
		case PFS_OPT_FLAG:
			if (strcmp(a, o->name) != 0)
				break;
			v = NULL;
			goto found;
		case PFS_OPT_ON_OFF:
			/* on|off glued with '=', or as the next word */
			if (strncmp(a, o->name, n) != 0 || (a[n] && a[n] != '='))
				break;
			v = a[n] == '=' ? a + n + 1 : NULL;
			if (!v && *i + 1 < argc &&
			    (strcmp(argv[*i + 1], "on") == 0 || strcmp(argv[*i + 1], "off") == 0))
				v = argv[++*i];
			goto found;
		case PFS_OPT_VALUE:
			v = pfs_cli_optval(argc, argv, i, a, o->name, &m);
			if (m)
				goto found;
			break;
		}
		continue;
found:
		r = o->set(cfg, v, o->name, err, errlen);
		return r < 0 ? r : 1;
	}
	return 0;
}

int pfs_cli_mount_opt_kind(const char *name)
{
	for (size_t k = 0; k < PFS_ARRAY_SIZE(mount_opts); k++)
		if (!mount_opts[k].compat && strcmp(mount_opts[k].name, name) == 0)
			return (int)mount_opts[k].kind;
	return -1;
}

int pfs_cli_mount_key(struct pfs_config *cfg, const char *key, size_t klen, const char *v,
		      char *err, size_t errlen)
{
	for (size_t k = 0; k < PFS_ARRAY_SIZE(mount_opts); k++) {
		const struct mount_opt *o = &mount_opts[k];
		size_t n = o->key ? strcspn(o->key, "=") : 0;
		int r;

		if (!o->key || n != klen || strncmp(o->key, key, klen) != 0)
			continue;
		if (o->kind == PFS_OPT_VALUE && !v) {
			pfs_cli_seterr(err, errlen, "-o %.*s needs a value (%sVALUE)", (int)klen,
				       key, o->key);
			return -EINVAL;
		}
		if (o->kind == PFS_OPT_FLAG && v) {
			pfs_cli_seterr(err, errlen, "-o %s takes no value (not %s=%s)", o->key,
				       o->key, v);
			return -EINVAL;
		}
		r = o->set(cfg, v, o->key, err, errlen);
		return r < 0 ? r : 1;
	}
	return 0;
}

/* -f, -d and -o (its value glued on or the next argument): 1 if argv[*i]
 * is one of them, 0 if not, or -errno. */
static int mount_flag(struct pfs_config *cfg, int argc, char **argv, int *i, char *err,
		      size_t errlen)
{
	const char *a = argv[*i], *v;
	int ret = 0;

	if (strcmp(a, "-f") == 0 || strcmp(a, "--foreground") == 0) {
		cfg->foreground = true;
	} else if (strcmp(a, "-d") == 0 || strcmp(a, "--debug") == 0) {
		ret = pfs_cli_add_fuse_opts(cfg, "debug", err, errlen);
	} else if (strncmp(a, "-o", 2) == 0) {
		v = a[2] ? a + 2 : (*i + 1 < argc ? argv[++*i] : NULL);
		if (!v) {
			pfs_cli_seterr(err, errlen, "option -o needs a value");
			return -EINVAL;
		}
		ret = pfs_cli_add_fuse_opts(cfg, v, err, errlen);
	} else {
		return 0;
	}
	return ret < 0 ? ret : 1;
}

/* The words among the arguments: SOURCE, then MOUNTPOINT. */
struct mount_words {
	const char *pos[2];
	int npos;
	bool dashdash;          /* after "--" every argument is a word */
};

static int add_word(struct mount_words *w, bool compat, const char *a, char *err,
		    size_t errlen)
{
	/* PassthroughFS's spelling names both by option */
	if (w->npos == 2 || compat) {
		pfs_cli_seterr(err, errlen, "unexpected argument '%s'", a);
		return -EINVAL;
	}
	w->pos[w->npos++] = a;
	return 0;
}

/* After the arguments: SOURCE and MOUNTPOINT, by position or (compat) by
 * --target and --mountpoint. */
static int take_words(struct pfs_config *cfg, bool compat, const struct mount_words *w,
		      char *err, size_t errlen)
{
	if (compat) {
		if (!cfg->mountpoint || !cfg->source) {
			pfs_cli_seterr(err, errlen, "missing %s (usage: prismfs --mountpoint "
				       "MOUNTPOINT --target SOURCE [--mapping_file FILE])",
				       cfg->mountpoint ? "--target" : "--mountpoint");
			return -EINVAL;
		}
		cfg->foreground = true; /* PassthroughFS ran in the foreground */
		return 0;
	}
	if (cfg->mirror) {
		/* The mirror takes SOURCE's place: MOUNTPOINT alone, or after
		 * a label (a word without '/') as mount(8) passes one: none. */
		if (w->npos == 2 && !pfs_cli_has_slash(w->pos[0])) {
			cfg->mountpoint = w->pos[1];
			return 0;
		}
		if (w->npos != 1) {
			pfs_cli_seterr(err, errlen, w->npos ? "--mirror takes the place of SOURCE "
				       "(usage: prismfs mount --mirror DIR MOUNTPOINT)"
				       : "missing MOUNTPOINT (usage: prismfs mount --mirror DIR "
					 "MOUNTPOINT)");
			return -EINVAL;
		}
		cfg->mountpoint = w->pos[0];
		return 0;
	}
	if (w->npos == 1 && cfg->new_mountpoint && !cfg->noptlowers) {
		/* SOURCE alone: the mount point is made at mount (throwaway.c) */
		cfg->source = w->pos[0];
		return 0;
	}
	if (w->npos == 0 && cfg->new_mountpoint && cfg->noptlowers)
		return 0;
	if (w->npos == 2 && cfg->new_mountpoint) {
		pfs_cli_seterr(err, errlen, "--new-mountpoint makes the mount point: give SOURCE "
			       "alone, not %s", w->pos[1]);
		return -EINVAL;
	}
	if (w->npos == 1 && (cfg->noptlowers || cfg->optadd)) {
		/* fuse-overlayfs's synopsis: lowerdir= names SOURCE (a lone
		 * datadir+= is refused by pfs_cli_finish_layers, saying why) */
		cfg->mountpoint = w->pos[0];
		return 0;
	}
	if (w->npos < 2) {
		pfs_cli_seterr(err, errlen, "missing %s (usage: prismfs mount SOURCE MOUNTPOINT)",
			       w->npos ? "MOUNTPOINT" : "SOURCE and MOUNTPOINT");
		return -EINVAL;
	}
	cfg->source = w->pos[0];
	cfg->mountpoint = w->pos[1];
	return 0;
}

int pfs_cli_parse_mount(int argc, char **argv, int start, bool compat, struct pfs_config *cfg,
			char *err, size_t errlen)
{
	struct mount_words w = {.npos = 0};
	int ret;

	for (int i = start; i < argc; i++) {
		const char *a = argv[i];

		if (w.dashdash || a[0] != '-' || a[1] == '\0') {
			ret = add_word(&w, compat, a, err, errlen);
		} else if (strcmp(a, "--") == 0) {
			w.dashdash = true;
			ret = 0;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			cfg->cmd = PFS_CMD_MOUNT_HELP;
			cfg->usage = pfs_mount_usage;
			return 0;
		} else {
			ret = mount_flag(cfg, argc, argv, &i, err, errlen);
			if (ret == 0)
				ret = mount_opt(cfg, compat, argc, argv, &i, err, errlen);
			if (ret == 0) {
				pfs_cli_seterr(err, errlen, "unknown option '%s' (see prismfs "
					       "mount --help)", a);
				ret = -EINVAL;
			}
		}
		if (ret < 0)
			return ret;
	}
	ret = take_words(cfg, compat, &w, err, errlen);
	if (ret < 0)
		return ret;
	return pfs_cli_finish_mount(cfg, err, errlen);
}
