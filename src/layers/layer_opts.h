/* layer_opts: the choices a layered mount is made with — how it writes
 * whiteouts, and what becomes of its upper at unmount. The command line
 * (cli/), the layers, commit and the control socket all speak of them, so
 * they live here, below all of those. */
#ifndef PFS_LAYER_OPTS_H
#define PFS_LAYER_OPTS_H

/* How a layered mount writes whiteouts: a 0/0 character device (the
 * kernel's form; needs CAP_MKNOD), a `.wh.NAME` file, or the device where
 * mknod works and the file otherwise. */
enum pfs_whiteout { PFS_WH_AUTO, PFS_WH_CHARDEV, PFS_WH_FILE };

/* Directory redirects (overlayfs's redirect_dir): a directory with lower
 * parts renamed keeps them through an overlay.redirect xattr naming where
 * they are. OFF (and the kernel's nofollow): none made, none followed
 * (rename fails with EXDEV); FOLLOW: followed, none made; ON: both. */
enum pfs_redirect { PFS_REDIR_OFF, PFS_REDIR_FOLLOW, PFS_REDIR_ON };

/* What becomes of a layered mount's upper when it is unmounted. */
enum pfs_action {
	PFS_ACT_NONE,            /* not given */
	PFS_ACT_PRESERVE,        /* keep the upper as it is (the default) */
	PFS_ACT_DISCARD,         /* empty the upper (and work) */
	PFS_ACT_COMMIT,          /* apply the upper to the top lower in place */
	PFS_ACT_COMMIT_ATOMIC,   /* ... by building a new tree and swapping it in */
};

/* "auto", "chardev", "file". */
static inline const char *pfs_whiteout_name(enum pfs_whiteout w)
{
	static const char *const names[] = {"auto", "chardev", "file"};

	return (unsigned)w < sizeof(names) / sizeof(names[0]) ? names[w] : "?";
}

/* "preserve", "discard", "commit", "commit-atomic" (NONE: "none"). */
static inline const char *pfs_action_name(enum pfs_action a)
{
	static const char *const names[] = {"none", "preserve", "discard", "commit",
					    "commit-atomic"};

	return (unsigned)a < sizeof(names) / sizeof(names[0]) ? names[a] : "?";
}

/* The action named s (not "none"); 0 or -EINVAL. */
static inline int pfs_action_parse(const char *s, enum pfs_action *out)
{
	for (int a = PFS_ACT_PRESERVE; s && a <= PFS_ACT_COMMIT_ATOMIC; a++) {
		const char *n = pfs_action_name((enum pfs_action)a), *p = s;

		while (*n && *n == *p) {
			n++;
			p++;
		}
		if (!*n && !*p) {
			*out = (enum pfs_action)a;
			return 0;
		}
	}
	return -22; /* -EINVAL, without <errno.h> in every includer */
}

#endif
