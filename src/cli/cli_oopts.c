/* cli_oopts: the -o list — what prismfs acts on itself (every option of
 * mount's table as key=value, cli_mount.c; the kernel overlay options),
 * what mount(8) alone cares about (dropped), and the rest, kept for
 * libfuse. Pure, as cli.c. */
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

/* lowerdir=L1:L2:...::D1::D2 — SOURCE and the layers below it, as the
 * kernel spells them ('\:' is a colon inside a name): after the first
 * "::" the data-only layers, each after a "::" too. */
static int add_lowerdir(struct pfs_config *cfg, const char *v, size_t n, char *err,
			size_t errlen)
{
	const char *p = v, *end = v + n;
	bool data = false;

	if (cfg->optadd) {
		/* The kernel's would replace the layers given so far; as with
		 * lowerdir= twice, prismfs refuses instead. */
		pfs_cli_seterr(err, errlen, "lowerdir= cannot follow lowerdir+= or datadir+= "
			       "(give the layers one way)");
		return -EINVAL;
	}
	if (cfg->noptlowers) {
		pfs_cli_seterr(err, errlen, "lowerdir= given twice");
		return -EINVAL;
	}
	if (!cfg->layer_opt)
		cfg->layer_opt = "lowerdir=";
	for (;;) {
		const char *q = scan_to(p, end, ':');
		char *dir;

		if (q == p && p > v && p[-1] == ':' && q < end && !(p - 1 > v && p[-2] == ':')) {
			/* The second colon of "::": data-only layers from here
			 * on (the kernel's), one more after each "::". */
			if (!cfg->optdata && cfg->ndatalowers) {
				pfs_cli_seterr(err, errlen, "give the data-only layers with "
					       "--data-lower or after '::' in lowerdir=, not both");
				return -EINVAL;
			}
			data = cfg->optdata = true;
			p = q + 1;
			continue;
		}
		if (q == p) {
			pfs_cli_seterr(err, errlen, "empty directory in lowerdir=%.*s", (int)n, v);
			return -EINVAL;
		}
		if (data && q < end && !(q + 1 < end && q[1] == ':')) {
			pfs_cli_seterr(err, errlen, "lowerdir=%.*s: a regular lower layer (after "
				       "':') cannot follow data-only ones (after '::'), as the "
				       "kernel's", (int)n, v);
			return -EINVAL;
		}
		dir = keep_str(cfg, p, (size_t)(q - p));
		if (!dir || (data ? pfs_cli_push_dir(&cfg->datalowers, &cfg->ndatalowers, dir)
				  : pfs_cli_push_dir(&cfg->optlowers, &cfg->noptlowers, dir)) < 0)
			return -ENOMEM;
		if (q == end)
			return 0;
		p = q + 1;
	}
}

/* lowerdir+=DIR and datadir+=DIR (the kernel's since 6.8): one layer
 * each, appended in order, the first lowerdir+= naming SOURCE. The value
 * is the name as it is, as the kernel takes it: no '\:' is needed, and
 * none is unescaped, nor '\,' (a comma always ends the item, as in the
 * kernel's mount(2) data). The kernel's rules: not after lowerdir=, no
 * regular layer after a data-only one, and datadir+= needs a lowerdir+=
 * (pfs_cli_finish_layers checks that one, once all are in). */
static int add_layer_plus(struct pfs_config *cfg, bool data, const char *v, size_t n,
			  char *err, size_t errlen)
{
	const char *what = data ? "datadir+=" : "lowerdir+=";
	char **strs, *dir;

	if (!n) {
		pfs_cli_seterr(err, errlen, "%s needs a directory", what);
		return -EINVAL;
	}
	if (cfg->noptlowers && !cfg->optadd) {
		pfs_cli_seterr(err, errlen, "%s%.*s: lowerdir+= and datadir+= cannot follow "
			       "lowerdir=, as the kernel's (give the layers one way)", what,
			       (int)n, v);
		return -EINVAL;
	}
	if (!data && cfg->optdata) {
		pfs_cli_seterr(err, errlen, "lowerdir+=%.*s: a regular lower layer cannot follow "
			       "data-only ones (datadir+=), as the kernel's", (int)n, v);
		return -EINVAL;
	}
	if (data && !cfg->optdata && cfg->ndatalowers) {
		pfs_cli_seterr(err, errlen, "give the data-only layers with --data-lower or "
			       "datadir+=, not both");
		return -EINVAL;
	}
	strs = realloc(cfg->strs, (cfg->nstrs + 1) * sizeof(*strs));
	if (!strs)
		return -ENOMEM;
	cfg->strs = strs;
	dir = strndup(v, n);
	if (!dir)
		return -ENOMEM;
	cfg->strs[cfg->nstrs++] = dir;
	cfg->optadd = true;
	if (!cfg->layer_opt)
		cfg->layer_opt = what;
	if (data) {
		cfg->optdata = true;
		return pfs_cli_push_dir(&cfg->datalowers, &cfg->ndatalowers, dir) < 0 ? -ENOMEM
										   : 0;
	}
	return pfs_cli_push_dir(&cfg->optlowers, &cfg->noptlowers, dir) < 0 ? -ENOMEM : 0;
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

/* Kernel overlayfs's options for features (Documentation/filesystems/
 * overlayfs.rst), so that an overlay fstab line works with its type
 * changed to fuse.prismfs. A value that means what prismfs does is
 * accepted (nothing to set); one that asks for what prismfs does not do
 * is refused, saying why, before anything is mounted. */
static const struct ovl_opt {
	const char *key;        /* "key=" */
	const char *values[5];  /* every value the kernel takes */
	unsigned same;          /* bit i: values[i] means what prismfs does */
	const char *why;        /* why the others are refused */
} ovl_opts[] = {
	/* redirect_dir= is read by ovl_opt itself (it sets cfg->redirect). */
	{"index=", {"on", "off"}, 0x2,
	 "prismfs keeps no inode index (a copy-up breaks the hard links of a lower file, as with "
	 "index=off); use index=off"},
	/* metacopy= is read by ovl_opt itself (it sets cfg->metacopy). */
	{"nfs_export=", {"on", "off"}, 0x2,
	 "prismfs does not export overlay file handles; use nfs_export=off"},
	/* Every mode keeps (st_dev, st_ino) one object's: the kernel by a
	 * device per layer (off) or the layer in the high bits (on, auto);
	 * a FUSE mount has one st_dev, so prismfs tags the high bits when
	 * the layers span filesystems, and shows real numbers when not. */
	{"xino=", {"off", "auto", "on"}, 0x7, NULL},
	/* prismfs stores no file handles and no overlay.uuid on the upper:
	 * the legacy null uuid (auto reads an upper without overlay.uuid so
	 * too); on asks for a persistent uuid and f_fsid of its own. */
	{"uuid=", {"on", "off", "null", "auto"}, 0xe,
	 "prismfs keeps no overlay uuid on the upper (no overlay.uuid xattr, no f_fsid of its "
	 "own); use uuid=null, off or auto"},
};

/* 1 if the item is a kernel overlay option (accepted), 0 if it is not one
 * of them, -EINVAL if prismfs cannot do what it asks. */
static int ovl_opt(struct pfs_config *cfg, const char *p, size_t n, char *err, size_t errlen)
{
	if (item_is(p, n, "userxattr")) {
		cfg->userxattr = true; /* the layers' xattrs are user.overlay.* */
		if (!cfg->layer_opt)
			cfg->layer_opt = "userxattr";
		return 1;
	}
	if (n >= 9 && strncmp(p, "metacopy=", 9) == 0) {
		if (!item_is(p + 9, n - 9, "on") && !item_is(p + 9, n - 9, "off")) {
			pfs_cli_seterr(err, errlen, "-o %.*s: the kernel overlay option metacopy= "
				       "takes on, off", (int)n, p);
			return -EINVAL;
		}
		cfg->metacopy = item_is(p + 9, n - 9, "on");
		if (!cfg->layer_opt)
			cfg->layer_opt = "metacopy=";
		return 1;
	}
	if (n >= 13 && strncmp(p, "redirect_dir=", 13) == 0) {
		/* off as a kernel without redirect_always_follow reads it:
		 * nofollow (prismfs's default). */
		static const char *const rv[] = {"off", "nofollow", "follow", "on"};
		static const enum pfs_redirect rm[] = {PFS_REDIR_OFF, PFS_REDIR_OFF,
						       PFS_REDIR_FOLLOW, PFS_REDIR_ON};

		for (size_t j = 0; j < PFS_ARRAY_SIZE(rv); j++) {
			if (item_is(p + 13, n - 13, rv[j])) {
				cfg->redirect = rm[j];
				cfg->redirect_given = true;
				if (!cfg->layer_opt)
					cfg->layer_opt = "redirect_dir=";
				return 1;
			}
		}
		pfs_cli_seterr(err, errlen, "-o %.*s: the kernel overlay option redirect_dir= takes "
			       "on, follow, nofollow, off", (int)n, p);
		return -EINVAL;
	}
	for (size_t i = 0; i < PFS_ARRAY_SIZE(ovl_opts); i++) {
		const struct ovl_opt *o = &ovl_opts[i];
		size_t k = strlen(o->key);

		if (n < k || strncmp(p, o->key, k) != 0)
			continue;
		for (unsigned j = 0; j < PFS_ARRAY_SIZE(o->values) && o->values[j]; j++) {
			if (!item_is(p + k, n - k, o->values[j]))
				continue;
			if (!(o->same >> j & 1)) {
				pfs_cli_seterr(err, errlen, "-o %.*s: %s", (int)n, p, o->why);
				return -EINVAL;
			}
			if (!cfg->layer_opt)
				cfg->layer_opt = o->key;
			return 1;
		}
		pfs_cli_seterr(err, errlen, "-o %.*s: the kernel overlay option %s takes %s, %s%s%s%s%s",
			       (int)n, p, o->key, o->values[0], o->values[1],
			       o->values[2] ? ", " : "", o->values[2] ? o->values[2] : "",
			       o->values[3] ? ", " : "", o->values[3] ? o->values[3] : "");
		return -EINVAL;
	}
	return 0;
}

/* One -o item: lowerdir= (the kernel's list, SOURCE first) or lowerdir+=
 * and datadir+= (one layer each), an option of
 * mount's table as key[=value], a kernel overlay option, a flag for
 * mount(8) alone, or one for libfuse (the generic mount flags among them). */
static int add_fuse_opt(struct pfs_config *cfg, const char *p, size_t n, char *err,
			size_t errlen)
{
	const char *eq = memchr(p, '=', n), *v;
	size_t klen = eq ? (size_t)(eq - p) : n;
	char *val = NULL;
	int ret;

	if ((v = item_val(p, n, "lowerdir")))
		return add_lowerdir(cfg, v, n - (size_t)(v - p), err, errlen);
	if ((v = item_val(p, n, "lowerdir+")) || (v = item_val(p, n, "datadir+")))
		return add_layer_plus(cfg, p[0] == 'd', v, n - (size_t)(v - p), err, errlen);
	if (eq) {
		val = keep_str(cfg, eq + 1, n - klen - 1);
		if (!val)
			return -ENOMEM;
	}
	ret = pfs_cli_mount_key(cfg, p, klen, val, err, errlen);
	if (ret == 0)
		ret = ovl_opt(cfg, p, n, err, errlen);
	if (ret != 0)
		return ret < 0 ? ret : 0;
	if (mount8_only(p, n))
		return 0;
	if (item_is(p, n, "default_permissions")) {
		cfg->default_permissions = true; /* passed on by the daemon */
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

/* --default-upper: the upper is SOURCE_upper, beside the source (made at
 * mount if missing: throwaway.c). */
int pfs_cli_default_upper(struct pfs_config *cfg, char *err, size_t errlen)
{
	size_t n = cfg->source ? strlen(cfg->source) : 0;
	char **strs, *up;

	if (cfg->upper) {
		pfs_cli_seterr(err, errlen, "--default-upper and --upper %s contradict each other",
			       cfg->upper);
		return -EINVAL;
	}
	while (n > 1 && cfg->source[n - 1] == '/')
		n--;
	if (!n || strcmp(cfg->source, "/") == 0) {
		pfs_cli_seterr(err, errlen, "--default-upper needs a SOURCE directory other than /");
		return -EINVAL;
	}
	strs = realloc(cfg->strs, (cfg->nstrs + 1) * sizeof(*strs));
	if (!strs)
		return -EINVAL;
	cfg->strs = strs;
	up = malloc(n + sizeof("_upper"));
	if (!up)
		return -EINVAL;
	memcpy(up, cfg->source, n);
	memcpy(up + n, "_upper", sizeof("_upper"));
	cfg->strs[cfg->nstrs++] = up;
	cfg->upper = up;
	return 0;
}
