/* cli_mount: mount's command line — its flags and valued options, the -o
 * list (what prismfs acts on itself, the rest kept for libfuse) and the
 * layer options in both spellings (--upper/--lower/... and the kernel's
 * upperdir=/lowerdir=/...), folded together once all arguments are read.
 * Pure, as cli.c. */
#include "cli/cli.h"
#include "cli/cli_parse.h"
#include "util/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int append_opt(struct pfs_config *cfg, const char *item, size_t n)
{
	size_t old = cfg->fuse_opts ? strlen(cfg->fuse_opts) : 0;
	char *p = realloc(cfg->fuse_opts, old + n + 2);

	if (!p)
		return -ENOMEM;
	if (old)
		p[old++] = ',';
	memcpy(p + old, item, n);
	p[old + n] = '\0';
	cfg->fuse_opts = p;
	return 0;
}

static bool item_is(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && strncmp(p, lit, n) == 0;
}

/* The value of a "name=value" item, or NULL if the item is not name's. */
static const char *item_val(const char *p, size_t n, const char *name)
{
	size_t k = strlen(name);

	if (n > k && strncmp(p, name, k) == 0 && p[k] == '=')
		return p + k + 1;
	return NULL;
}

/* Where the item starting at p ends: the next sep not escaped by a
 * backslash (how the kernel and libfuse let ',' and ':' into values). */
static const char *scan_to(const char *p, const char *end, char sep)
{
	for (; p < end && *p != sep; p++)
		if (*p == '\\' && p + 1 < end)
			p++;
	return p;
}

/* A copy of s[0..n) that cfg owns, its backslash escapes removed. */
static char *keep_str(struct pfs_config *cfg, const char *s, size_t n)
{
	char **strs = realloc(cfg->strs, (cfg->nstrs + 1) * sizeof(*strs));
	char *out, *o;

	if (!strs)
		return NULL;
	cfg->strs = strs;
	out = malloc(n + 1);
	if (!out)
		return NULL;
	o = out;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n)
			i++;
		*o++ = s[i];
	}
	*o = '\0';
	cfg->strs[cfg->nstrs++] = out;
	return out;
}

/* lowerdir=L1:L2:... — SOURCE and the layers below it, as the kernel
 * spells them ('\:' is a colon inside a name). */
static int add_lowerdir(struct pfs_config *cfg, const char *v, size_t n, char *err,
			size_t errlen)
{
	const char *p = v, *end = v + n;

	if (cfg->noptlowers) {
		pfs_cli_seterr(err, errlen, "lowerdir= given twice");
		return -EINVAL;
	}
	if (!cfg->layer_opt)
		cfg->layer_opt = "lowerdir=";
	for (;;) {
		const char *q = scan_to(p, end, ':');
		char *dir;

		if (q == p) {
			pfs_cli_seterr(err, errlen, "empty directory in lowerdir=%.*s", (int)n, v);
			return -EINVAL;
		}
		dir = keep_str(cfg, p, (size_t)(q - p));
		if (!dir || pfs_cli_push_dir(&cfg->optlowers, &cfg->noptlowers, dir) < 0)
			return -ENOMEM;
		if (q == end)
			return 0;
		p = q + 1;
	}
}

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
			       "not '%s'", what, v ? v : "");
		return -EINVAL;
	}
	if (!cfg->layer_opt)
		cfg->layer_opt = what;
	return 0;
}

/* Options mount(8), mount.fuse3 and fstab lines carry that mean nothing to
 * a FUSE mount: accepted and dropped. Most steer mount(8) itself. The
 * access time flags (relatime is also the kernel's default) cannot matter:
 * FUSE marks its inodes S_NOATIME, so the kernel never updates an access
 * time on the mount; SOURCE's filesystem does, under its own flags.
 * libfuse 3.14 knows none of these by name. */
static bool mount8_only(const char *p, size_t n)
{
	static const char *const names[] = {"defaults", "auto", "noauto", "nofail", "user",
					    "nouser", "users", "owner", "group", "_netdev",
					    "relatime", "norelatime", "strictatime", "nostrictatime",
					    "diratime", "nodiratime", "lazytime", "nolazytime"};

	for (size_t i = 0; i < PFS_ARRAY_SIZE(names); i++)
		if (item_is(p, n, names[i]))
			return true;
	return (n >= 2 && strncmp(p, "x-", 2) == 0) || item_val(p, n, "comment");
}

/* One -o item. The layer options are ours, in the kernel overlayfs
 * spelling, and never reach libfuse. */
static int add_fuse_opt(struct pfs_config *cfg, const char *p, size_t n, char *err,
			size_t errlen)
{
	const char *v;
	char *val = NULL;

	if ((v = item_val(p, n, "lowerdir")))
		return add_lowerdir(cfg, v, n - (size_t)(v - p), err, errlen);
	if ((v = item_val(p, n, "upperdir")) || (v = item_val(p, n, "workdir")) ||
	    (v = item_val(p, n, "whiteout")) || (v = item_val(p, n, "on_unmount"))) {
		val = keep_str(cfg, v, n - (size_t)(v - p));
		if (!val)
			return -ENOMEM;
		switch (p[0]) {
		case 'u':
			cfg->upper_from_opt = true;
			return set_dir(cfg, &cfg->upper, val, "upperdir=", err, errlen);
		case 'w':
			if (p[1] == 'o')
				return set_dir(cfg, &cfg->work, val, "workdir=", err, errlen);
			return pfs_cli_set_whiteout(cfg, val, "whiteout=", err, errlen);
		default:
			return set_action(cfg, val, "on_unmount=", err, errlen);
		}
	}
	if (mount8_only(p, n))
		return 0;
	if (item_is(p, n, "default_permissions")) {
		cfg->default_permissions = true; /* passed on by the daemon */
		return 0;
	}
	if (item_is(p, n, "nodefault_permissions")) {
		cfg->default_permissions = false;
		return 0;
	}
	if (item_is(p, n, "nosymfollow") || item_is(p, n, "symfollow")) {
		/* libfuse 3.14 cannot pass it: the daemon sets it on the mount */
		cfg->nosymfollow = p[0] == 'n';
		return 0;
	}
	if (item_is(p, n, "debug")) {
		/* As libfuse's own -o debug: the trace needs a terminal's stderr */
		cfg->debug = true;
		cfg->foreground = true;
	}
	if (item_is(p, n, "allow_other"))
		cfg->allow_other = true;
	else if (item_is(p, n, "ro"))
		cfg->mount_ro = true;
	else if (item_is(p, n, "rw"))
		cfg->mount_ro = false;
	return append_opt(cfg, p, n);
}

int pfs_cli_add_fuse_opts(struct pfs_config *cfg, const char *opts, char *err, size_t errlen)
{
	const char *p = opts, *end = opts + strlen(opts);

	if (!*opts) {
		pfs_cli_seterr(err, errlen, "empty -o option");
		return -EINVAL;
	}
	while (p < end) {
		const char *q = scan_to(p, end, ',');
		int ret;

		if (q == p || (q + 1 == end && *q == ',')) {
			pfs_cli_seterr(err, errlen, "empty item in -o option list '%s'", opts);
			return -EINVAL;
		}
		ret = add_fuse_opt(cfg, p, (size_t)(q - p), err, errlen);
		if (ret < 0)
			return ret;
		p = q < end ? q + 1 : q;
	}
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

/* After all arguments: fold lowerdir= into SOURCE and the lowers, and
 * check that the layer options come with an upper. */
static int finish_layers(struct pfs_config *cfg, char *err, size_t errlen)
{
	if (cfg->noptlowers) {
		const char *src = cfg->source;

		if (cfg->nlowers) {
			pfs_cli_seterr(err, errlen, "give the lower layers with --lower or with "
				       "lowerdir=, not both");
			return -EINVAL;
		}
		if (src && (strchr(src, '/') || strcmp(src, ".") == 0 || strcmp(src, "..") == 0) &&
		    !same_dir_name(src, cfg->optlowers[0])) {
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
	if (cfg->upper_from_opt && !cfg->noptlowers && !cfg->nlowers && cfg->source &&
	    strcmp(cfg->source, "none") == 0) {
		pfs_cli_seterr(err, errlen, "upperdir= needs lowerdir= (the layers below it; or a "
			       "SOURCE directory instead of none)");
		return -EINVAL;
	}
	if (!cfg->upper) {
		if (cfg->layer_opt) {
			pfs_cli_seterr(err, errlen, "%s needs an upper directory (--upper DIR or "
				       "upperdir=DIR)", cfg->layer_opt);
			return -EINVAL;
		}
		return 0;
	}
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

/* "auto", "on", "off" -> 0, 1, 2 (the order of both tri-state enums), or -1. */
static int auto_on_off(const char *v)
{
	static const char *const words[] = {"auto", "on", "off"};

	for (int k = 0; v && k < 3; k++)
		if (strcmp(v, words[k]) == 0)
			return k;
	return -1;
}

/* The options that take a value (--name VALUE or --name=VALUE). Each is
 * given the value (NULL: missing at the end of argv) and the argument as
 * it was spelled. */
typedef int mount_opt_fn(struct pfs_config *cfg, const char *v, const char *arg, char *err,
			 size_t errlen);

static int opt_log_format(struct pfs_config *cfg, const char *v, const char *arg, char *err,
			  size_t errlen)
{
	if (v && strcmp(v, "text") == 0) {
		cfg->log_format = PFS_LOG_TEXT;
	} else if (v && strcmp(v, "json") == 0) {
		cfg->log_format = PFS_LOG_JSON;
	} else {
		pfs_cli_seterr(err, errlen, "--log-format must be text or json, not '%s'",
			       v ? v : "");
		return -EINVAL;
	}
	return 0;
}

static int opt_passthrough(struct pfs_config *cfg, const char *v, const char *arg, char *err,
			   size_t errlen)
{
	int t = auto_on_off(v);

	if (t < 0) {
		pfs_cli_seterr(err, errlen, "--passthrough must be auto, on or off, not '%s'",
			       v ? v : "");
		return -EINVAL;
	}
	cfg->passthrough = (enum pfs_passthrough)t;
	return 0;
}

static int opt_uring(struct pfs_config *cfg, const char *v, const char *arg, char *err,
		     size_t errlen)
{
	int t = auto_on_off(v);

	if (t < 0) {
		pfs_cli_seterr(err, errlen, "--uring must be auto, on or off, not '%s'",
			       v ? v : "");
		return -EINVAL;
	}
	cfg->uring = (enum pfs_uring_opt)t;
	return 0;
}

static int opt_log(struct pfs_config *cfg, const char *v, const char *arg, char *err,
		   size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "--log needs a file name or -");
		return -EINVAL;
	}
	cfg->log_path = v;
	return 0;
}

static int opt_timeout(struct pfs_config *cfg, const char *v, const char *arg, char *err,
		       size_t errlen)
{
	if (pfs_parse_seconds(v, &cfg->timeout) < 0) {
		pfs_cli_seterr(err, errlen, "--timeout needs a number of seconds, not '%s'",
			       v ? v : "");
		return -EINVAL;
	}
	return 0;
}

static int opt_map_max(struct pfs_config *cfg, const char *v, const char *arg, char *err,
		       size_t errlen)
{
	if (pfs_parse_size(v, &cfg->map_max) < 0 || cfg->map_max == 0) {
		pfs_cli_seterr(err, errlen, "--map-max needs a size in bytes (K, M, G allowed), "
			       "not '%s'", v ? v : "");
		return -EINVAL;
	}
	return 0;
}

/* --map, and PassthroughFS's --mapping_file (or --mapping-file). */
static int opt_map(struct pfs_config *cfg, const char *v, const char *arg, char *err,
		   size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "%s needs a file name", arg);
		return -EINVAL;
	}
	cfg->map_path = v;
	return 0;
}

static int opt_mountpoint(struct pfs_config *cfg, const char *v, const char *arg, char *err,
			  size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "--mountpoint needs a directory");
		return -EINVAL;
	}
	cfg->mountpoint = v;
	return 0;
}

static int opt_target(struct pfs_config *cfg, const char *v, const char *arg, char *err,
		      size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "--target needs a directory");
		return -EINVAL;
	}
	cfg->source = v;
	return 0;
}

static int opt_upper(struct pfs_config *cfg, const char *v, const char *arg, char *err,
		     size_t errlen)
{
	return set_dir(cfg, &cfg->upper, v, "--upper", err, errlen);
}

static int opt_work(struct pfs_config *cfg, const char *v, const char *arg, char *err,
		    size_t errlen)
{
	return set_dir(cfg, &cfg->work, v, "--work", err, errlen);
}

static int opt_lower(struct pfs_config *cfg, const char *v, const char *arg, char *err,
		     size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "--lower needs a directory");
		return -EINVAL;
	}
	if (pfs_cli_push_dir(&cfg->lowers, &cfg->nlowers, v) < 0)
		return -ENOMEM;
	if (!cfg->layer_opt)
		cfg->layer_opt = "--lower";
	return 0;
}

static int opt_whiteout(struct pfs_config *cfg, const char *v, const char *arg, char *err,
			size_t errlen)
{
	return pfs_cli_set_whiteout(cfg, v, "--whiteout", err, errlen);
}

static int opt_on_unmount(struct pfs_config *cfg, const char *v, const char *arg, char *err,
			  size_t errlen)
{
	return set_action(cfg, v, "--on-unmount", err, errlen);
}

static int opt_threads(struct pfs_config *cfg, const char *v, const char *arg, char *err,
		       size_t errlen)
{
	if (pfs_parse_long(v, 1, 1024, &cfg->threads) < 0) {
		pfs_cli_seterr(err, errlen, "--threads needs a number from 1 to 1024, not '%s'",
			       v ? v : "");
		return -EINVAL;
	}
	return 0;
}

static int opt_node_fds(struct pfs_config *cfg, const char *v, const char *arg, char *err,
			size_t errlen)
{
	if (pfs_parse_long(v, 16, 1L << 30, &cfg->node_fds) < 0) {
		pfs_cli_seterr(err, errlen, "--node-fds needs a number from 16 to %ld, not '%s'",
			       1L << 30, v ? v : "");
		return -EINVAL;
	}
	return 0;
}

/* --mirror DIR or file:///DIR. */
static int opt_mirror(struct pfs_config *cfg, const char *v, const char *arg, char *err,
		      size_t errlen)
{
	if (v && strncmp(v, "file://", 7) == 0)
		v += 7;
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "--mirror needs a directory (or file:///DIR)");
		return -EINVAL;
	}
	if (strstr(v, "://")) {
		pfs_cli_seterr(err, errlen, "--mirror %s: only a local directory (or file:///DIR) "
			       "can be a mirror", v);
		return -EINVAL;
	}
	cfg->mirror = v;
	return 0;
}

/* A cache size: K, M or G; a bare number is MiB, as mem-fuse has it. */
static int cache_bytes(const char *v, const char *arg, size_t *out, char *err, size_t errlen)
{
	size_t n;

	if (v && *v && strspn(v, "0123456789") == strlen(v) && strlen(v) < 10)
		n = (size_t)strtoul(v, NULL, 10) << 20;
	else if (!v || pfs_parse_size(v, &n) < 0)
		n = 0;
	if (n < ((size_t)1 << 20)) {
		pfs_cli_seterr(err, errlen, "%s needs a size of at least 1M (K, M, G; a bare "
			       "number is MiB), not '%s'", arg, v ? v : "");
		return -EINVAL;
	}
	*out = n;
	return 0;
}

static int opt_cache_size(struct pfs_config *cfg, const char *v, const char *arg, char *err,
			  size_t errlen)
{
	return cache_bytes(v, arg, &cfg->cache_size, err, errlen);
}

/* --cache-max-dirty, and mem-fuse's --cache-max-write-size. */
static int opt_cache_dirty(struct pfs_config *cfg, const char *v, const char *arg, char *err,
			   size_t errlen)
{
	return cache_bytes(v, arg, &cfg->cache_max_dirty, err, errlen);
}

static int opt_write_back(struct pfs_config *cfg, const char *v, const char *arg, char *err,
			  size_t errlen)
{
	if (pfs_parse_seconds(v, &cfg->write_back) < 0 || cfg->write_back > 86400) {
		pfs_cli_seterr(err, errlen, "--write-back needs a delay in seconds (0 to 86400), "
			       "not '%s'", v ? v : "");
		return -EINVAL;
	}
	return 0;
}

static int opt_journal(struct pfs_config *cfg, const char *v, const char *arg, char *err,
		       size_t errlen)
{
	if (!v || !*v) {
		pfs_cli_seterr(err, errlen, "--journal needs a local directory");
		return -EINVAL;
	}
	cfg->journal = v;
	return 0;
}

static const struct mount_opt {
	const char *name;
	bool compat;            /* PassthroughFS's spelling only */
	mount_opt_fn *set;
} mount_opts[] = {
	{"--log-format", false, opt_log_format},
	{"--passthrough", false, opt_passthrough},
	{"--uring", false, opt_uring},
	{"--log", false, opt_log},
	{"--timeout", false, opt_timeout},
	{"--map-max", false, opt_map_max},
	{"--map", false, opt_map},
	{"--mapping_file", false, opt_map},
	{"--mapping-file", false, opt_map},
	{"--mountpoint", true, opt_mountpoint},
	{"--target", true, opt_target},
	{"--upper", false, opt_upper},
	{"--work", false, opt_work},
	{"--lower", false, opt_lower},
	{"--whiteout", false, opt_whiteout},
	{"--on-unmount", false, opt_on_unmount},
	{"--threads", false, opt_threads},
	{"--node-fds", false, opt_node_fds},
	{"--mirror", false, opt_mirror},
	{"--cache-size", false, opt_cache_size},
	{"--cache-max-dirty", false, opt_cache_dirty},
	{"--cache-max-write-size", false, opt_cache_dirty},
	{"--write-back", false, opt_write_back},
	{"--journal", false, opt_journal},
};

/* argv[*i] is an option that takes a value (*i moves past a separate
 * one), or it is unknown. */
static int mount_opt(struct pfs_config *cfg, bool compat, int argc, char **argv, int *i,
		     char *err, size_t errlen)
{
	const char *a = argv[*i];

	for (size_t k = 0; k < PFS_ARRAY_SIZE(mount_opts); k++) {
		const struct mount_opt *o = &mount_opts[k];
		const char *v;
		bool m;

		if (o->compat && !compat)
			continue;
		v = pfs_cli_optval(argc, argv, i, a, o->name, &m);
		if (m)
			return o->set(cfg, v, a, err, errlen);
	}
	pfs_cli_seterr(err, errlen, "unknown option '%s' (see prismfs mount --help)", a);
	return -EINVAL;
}

/* The options without a value, and -o (its value glued on or the next
 * argument): 1 if argv[*i] is one of them, 0 if not, or -errno. */
static int mount_flag(struct pfs_config *cfg, int argc, char **argv, int *i, char *err,
		      size_t errlen)
{
	const char *a = argv[*i], *v;
	int ret = 0;

	if (strcmp(a, "-f") == 0 || strcmp(a, "--foreground") == 0) {
		cfg->foreground = true;
	} else if (strcmp(a, "-d") == 0 || strcmp(a, "--debug") == 0) {
		ret = pfs_cli_add_fuse_opts(cfg, "debug", err, errlen);
	} else if (strcmp(a, "--read-only") == 0) {
		cfg->read_only = true;
	} else if (strcmp(a, "--volatile") == 0) {
		cfg->volatile_source = true;
	} else if (strcmp(a, "--lazy-load") == 0 || strncmp(a, "--lazy-load=", 12) == 0) {
		/* mem-fuse's flag, or on|off (glued with = or the next word) */
		v = a[11] == '=' ? a + 12 : NULL;
		if (!v && *i + 1 < argc &&
		    (strcmp(argv[*i + 1], "on") == 0 || strcmp(argv[*i + 1], "off") == 0))
			v = argv[++*i];
		if (v && strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
			pfs_cli_seterr(err, errlen, "--lazy-load takes on or off, not '%s'", v);
			return -EINVAL;
		}
		cfg->lazy_load = !v || strcmp(v, "on") == 0;
	} else if (strcmp(a, "--no-default-permissions") == 0) {
		cfg->default_permissions = false;
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
		/* The mirror takes SOURCE's place: MOUNTPOINT alone. */
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
	if (w->npos < 2) {
		pfs_cli_seterr(err, errlen, "missing %s (usage: prismfs mount SOURCE MOUNTPOINT)",
			       w->npos ? "MOUNTPOINT" : "SOURCE and MOUNTPOINT");
		return -EINVAL;
	}
	cfg->source = w->pos[0];
	cfg->mountpoint = w->pos[1];
	return 0;
}

/* The cache's options belong to --mirror; defaults filled in. */
static int finish_cache(struct pfs_config *cfg, char *err, size_t errlen)
{
	if (!cfg->mirror) {
		if (cfg->cache_size || cfg->cache_max_dirty || cfg->write_back >= 0 ||
		    cfg->journal) {
			pfs_cli_seterr(err, errlen, "%s needs --mirror DIR",
				       cfg->cache_size ? "--cache-size"
				       : cfg->cache_max_dirty ? "--cache-max-dirty"
				       : cfg->journal ? "--journal"
							      : "--write-back");
			return -EINVAL;
		}
		return 0;
	}
	if (cfg->upper || cfg->nlowers || cfg->layer_opt) {
		pfs_cli_seterr(err, errlen, "--mirror cannot be used with layers (--upper, "
			       "--lower): a cached mount has no SOURCE to lay them over");
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
		}
		if (ret < 0)
			return ret;
	}
	ret = take_words(cfg, compat, &w, err, errlen);
	if (ret < 0)
		return ret;
	if (cfg->volatile_source)
		cfg->timeout = 0;
	ret = finish_cache(cfg, err, errlen);
	if (ret < 0)
		return ret;
	return finish_layers(cfg, err, errlen);
}
