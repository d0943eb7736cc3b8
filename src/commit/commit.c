/* commit: the entry points — check the input before touching anything,
 * lock, recover, scan, apply, and only then empty the upper. */
#include "commit/commit_int.h"
#include "layers/ovlfmt.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Names beside the lower: ".NAME" + the longest suffix used. */
#define SIBLING_EXTRA (1 + sizeof(".prismfs-inplace.tmp"))

static void seterr(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

/* --------------------------------------------------------------------
 * checking the input */


/* Is a (canonical) at or below b? */
static bool within(const char *a, const char *b)
{
	size_t n = strlen(b);

	if (strcmp(b, "/") == 0)
		return true;
	return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

static int check_apart(const char *wa, const char *a, const struct stat *sa, const char *wb,
		       const char *b, const struct stat *sb, char *err, size_t errlen)
{
	if ((sa->st_dev == sb->st_dev && sa->st_ino == sb->st_ino) || strcmp(a, b) == 0) {
		seterr(err, errlen, "the %s and the %s are the same directory (%s)", wa, wb, a);
		return -EINVAL;
	}
	if (within(a, b)) {
		seterr(err, errlen, "the %s %s is inside the %s %s", wa, a, wb, b);
		return -EINVAL;
	}
	if (within(b, a)) {
		seterr(err, errlen, "the %s %s is inside the %s %s", wb, b, wa, a);
		return -EINVAL;
	}
	return 0;
}

/* Does a mounted kernel overlay use path as a layer? A commit or discard
 * under a live overlay would change what it shows behind its back. */
static bool overlay_uses(const char *path, char *mnt, size_t mntlen)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	bool found = false;

	if (!f)
		return false;
	while (!found && getline(&line, &cap, f) > 0) {
		char *sep = strstr(line, " - "), *fstype, *opts, *save = NULL, *o, *mp;
		int field = 0;

		if (!sep)
			continue;
		line[strcspn(line, "\n")] = '\0';
		fstype = sep + 3;
		if (strncmp(fstype, "overlay ", 8) != 0)
			continue;
		opts = strrchr(fstype, ' ');
		if (!opts)
			continue;
		for (o = strtok_r(opts + 1, ",", &save); o && !found;
		     o = strtok_r(NULL, ",", &save)) {
			char *eq = strchr(o, '='), *s2 = NULL, *v;

			if (!eq)
				continue;
			*eq = '\0';
			if (strcmp(o, "upperdir") && strcmp(o, "workdir") &&
			    strncmp(o, "lowerdir", 8) && strncmp(o, "datadir", 7))
				continue;
			for (v = strtok_r(eq + 1, ":", &s2); v; v = strtok_r(NULL, ":", &s2)) {
				pfs_mountinfo_unescape(v);
				if (strcmp(v, path) == 0) {
					found = true;
					break;
				}
			}
		}
		if (found) {
			/* The mount point is the fifth field. */
			mp = line;
			for (field = 0; field < 4 && mp; field++) {
				mp = strchr(mp, ' ');
				if (mp)
					mp++;
			}
			if (mp) {
				mp[strcspn(mp, " ")] = '\0';
				pfs_mountinfo_unescape(mp);
				snprintf(mnt, mntlen, "%s", mp);
			} else {
				snprintf(mnt, mntlen, "?");
			}
		}
	}
	free(line);
	fclose(f);
	return found;
}

static int check_unused(const char *what, const char *path, char *err, size_t errlen)
{
	char mnt[PATH_MAX];

	if (overlay_uses(path, mnt, sizeof(mnt))) {
		seterr(err, errlen,
		       "the %s %s is in use by the overlay mounted at %s; unmount it first", what,
		       path, mnt);
		return -EBUSY;
	}
	return 0;
}

static bool is_mount_root(const char *path)
{
	struct statx stx;

	if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_TYPE, &stx) < 0)
		return false;
	return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	       (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

static void ctx_free(struct pfs_cctx *c)
{
	pfs_chide_close(c);
	if (c->uroot >= 0)
		close(c->uroot);
	if (c->lroot >= 0)
		close(c->lroot);
	if (c->pfd >= 0)
		close(c->pfd); /* also drops the lock */
	free(c->upper);
	free(c->lower);
	free(c->work);
	free(c->newroot);
	pfs_inomap_free(&c->ulinks);
	pfs_inomap_free(&c->llinks);
	pfs_pathbuf_free(&c->path);
	pfs_credir_free(&c->redir);
}

/* Open and lock lower's parent: one commit or recovery at a time beside a
 * lower (the journal and the new tree live there). */
static int lock_parent(struct pfs_cctx *c)
{
	char *slash = strrchr(c->lower, '/');
	char *parent;

	c->base = slash + 1;
	parent = slash == c->lower ? strdup("/") : strndup(c->lower, (size_t)(slash - c->lower));
	if (!parent)
		return pfs_cfail(c, -ENOMEM, "out of memory");
	c->pfd = pfs_st_openat(c->st, AT_FDCWD, parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (c->pfd < 0) {
		int ret = pfs_cfail(c, c->pfd, "cannot open %s", parent);

		free(parent);
		return ret;
	}
	if (flock(c->pfd, LOCK_EX | LOCK_NB) < 0) {
		int ret = -errno;

		if (ret == -EWOULDBLOCK)
			pfs_crefuse(c, -EBUSY,
				    "another prismfs commit or recovery is working beside %s "
				    "(%s is locked)",
				    c->lower, parent);
		else
			pfs_cfail(c, ret, "cannot lock %s", parent);
		free(parent);
		return ret == -EWOULDBLOCK ? -EBUSY : ret;
	}
	free(parent);
	return 0;
}

static int check_lower_name(struct pfs_cctx *c)
{
	if (strcmp(c->lower, "/") == 0) {
		seterr(c->err, c->errlen, "the lower cannot be /");
		return -EINVAL;
	}
	if (strlen(strrchr(c->lower, '/') + 1) + SIBLING_EXTRA > NAME_MAX) {
		seterr(c->err, c->errlen, "the lower's name %s is too long for the names a commit "
			"keeps beside it", strrchr(c->lower, '/') + 1);
		return -ENAMETOOLONG;
	}
	return 0;
}

/* An upper written through a mapping table (layer.c marks it) holds the
 * view's paths: applied to the lower's real ones it would change the wrong
 * files. */
static int check_not_mapped(struct pfs_cctx *c)
{
	int fd = pfs_st_openat(c->st, AT_FDCWD, c->upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	int has;

	if (fd < 0) {
		seterr(c->err, c->errlen, "cannot open the upper %s: %s", c->upper, strerror(-fd));
		return fd;
	}
	has = pfs_ovl_has(c->st, pfs_ref_fd(fd), PFS_OVL_MAPPED);
	close(fd);
	if (has > 0) {
		seterr(c->err, c->errlen, "the upper %s was written through a mapping table "
		       "(--map): its paths are the view's, not %s's, so it cannot be committed; "
		       "it is kept (prismfs discard empties it)", c->upper, c->lower);
		return -EINVAL;
	}
	return 0;
}

/* An upper last mounted over lowers below this one (layer_life.c records
 * them): committed without them, what it hid from them would show again. */
static int check_lowers_named(struct pfs_cctx *c)
{
	char rec[2048], *p;
	ssize_t n;
	int fd;

	if (c->o->nbelow)
		return 0;
	fd = pfs_st_openat(c->st, AT_FDCWD, c->upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0)
		return 0; /* open_roots says what is wrong */
	n = pfs_ovl_get(c->st, pfs_ref_fd(fd), PFS_OVL_LOWERS, rec, sizeof(rec));
	close(fd);
	if (n == -ENODATA || n == 0)
		return 0;
	if (n == -ERANGE || n < 0 || strcmp(rec, "?") == 0) {
		seterr(c->err, c->errlen, "the upper %s was mounted with lowers below %s: name "
		       "them after it, in order (--lower %s --lower L2 ...), so that what the "
		       "upper hid from them stays hidden", c->upper, c->lower, c->lower);
		return -EINVAL;
	}
	/* The record is the paths, each ended by a NUL: one line, a space apart. */
	for (p = rec; p < rec + n - 1; p++)
		if (!*p)
			*p = ' ';
	seterr(c->err, c->errlen, "the upper %s was mounted with lowers below %s (%s): name "
	       "them after it, in order (--lower %s --lower ...), so that what the upper hid "
	       "from them stays hidden", c->upper, c->lower, rec, c->lower);
	return -EINVAL;
}

static int check_commit(struct pfs_cctx *c, const struct pfs_commit_opts *o)
{
	struct stat su, sl, sw;
	int ret;

	if (!o->upper || !o->lower) {
		seterr(c->err, c->errlen, "both the upper and the lower are needed");
		return -EINVAL;
	}
	if ((ret = pfs_canon_dir("upper", o->upper, &c->upper, &su, c->err, c->errlen)) < 0 ||
	    (ret = pfs_canon_dir("lower", o->lower, &c->lower, &sl, c->err, c->errlen)) < 0 ||
	    (o->work && (ret = pfs_canon_dir("work directory", o->work, &c->work, &sw, c->err,
					 c->errlen)) < 0))
		return ret;
	ret = check_apart("upper", c->upper, &su, "lower", c->lower, &sl, c->err, c->errlen);
	if (ret < 0)
		return ret;
	if (c->work &&
	    ((ret = check_apart("work directory", c->work, &sw, "upper", c->upper, &su, c->err,
				c->errlen)) < 0 ||
	     (ret = check_apart("work directory", c->work, &sw, "lower", c->lower, &sl, c->err,
				c->errlen)) < 0))
		return ret;
	if ((ret = check_lower_name(c)) < 0)
		return ret;
	if ((ret = check_not_mapped(c)) < 0 || (ret = check_lowers_named(c)) < 0)
		return ret;
	if ((ret = check_unused("upper", c->upper, c->err, c->errlen)) < 0 ||
	    (ret = check_unused("lower", c->lower, c->err, c->errlen)) < 0)
		return ret;
	if (o->atomic) {
		if (is_mount_root(c->lower)) {
			seterr(c->err, c->errlen, "the lower %s is a mount point: --atomic builds "
			       "the new tree beside it and needs its parent on the same filesystem",
			       c->lower);
			return -EXDEV;
		}
		/* The journal is line based. */
		if (strchr(c->upper, '\n') || (c->work && strchr(c->work, '\n'))) {
			seterr(c->err, c->errlen, "--atomic cannot record a path with a newline");
			return -EINVAL;
		}
	}
	c->udev = su.st_dev;
	return 0;
}

static int open_roots(struct pfs_cctx *c)
{
	c->uroot = pfs_st_openat(c->st, AT_FDCWD, c->upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (c->uroot < 0)
		return pfs_cfail(c, c->uroot, "cannot open %s", c->upper);
	c->lroot = pfs_st_openat(c->st, AT_FDCWD, c->lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (c->lroot < 0)
		return pfs_cfail(c, c->lroot, "cannot open %s", c->lower);
	return 0;
}

static void ctx_init(struct pfs_cctx *c, const struct pfs_commit_opts *o, char *err,
		     size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->o = o;
	c->st = o->store;
	c->err = err;
	c->errlen = errlen;
	c->pfd = c->uroot = c->lroot = -1;
	err[0] = '\0';
}

static void append(struct pfs_cctx *c, const char *s)
{
	size_t n = strlen(c->err);

	if (n < c->errlen)
		snprintf(c->err + n, c->errlen - n, "%s", s);
}

/* An interrupted in-place commit, applied again from its journal
 * (commit_resume.c) with c's lock, as it was first run: in place. */
static int redo_inplace(struct pfs_cctx *c, const struct pfs_commit_opts *o)
{
	const char *upper = o->upper, *work = o->work;
	struct pfs_cctx r;
	int ret;

	ctx_init(&r, o, c->err, c->errlen);
	r.redir = c->redir;
	memset(&c->redir, 0, sizeof(c->redir));
	r.moving = r.redir.n > 0;
	r.pfd = c->pfd;
	r.base = c->base;
	r.upper = strdup(upper);
	r.lower = strdup(c->lower);
	r.work = work ? strdup(work) : NULL;
	if (!r.upper || !r.lower || (work && !r.work)) {
		ret = pfs_cfail(&r, -ENOMEM, "out of memory");
		goto out;
	}
	ret = open_roots(&r);
	if (ret == 0)
		ret = pfs_chide_open(&r);
	if (ret == 0)
		ret = pfs_chide_probe(&r);
	if (ret < 0)
		goto out;
	pfs_progress_init(&r.prog, false, stderr, "commit");
	ret = pfs_commit_scan(&r);
	if (ret == 0)
		ret = pfs_commit_inplace(&r);
	else if (!r.moving)
		pfs_inplace_abandon(&r);
	pfs_progress_end(&r.prog);
	if (ret < 0 && !r.committed) {
		char hint[2 * PATH_MAX + 96];

		snprintf(hint, sizeof(hint), "; the upper is kept, prismfs commit --upper %s "
			 "--lower %s completes it", r.upper, r.lower);
		append(&r, hint);
	}
out:
	r.pfd = -1; /* c's, and c's lock */
	ctx_free(&r);
	return ret;
}

/* Whatever commit of c->lower was cut short: in place, then atomic (each
 * commit recovers first, so there is at most one). */
static int recover_any(struct pfs_cctx *c, enum pfs_recovery *done, char **recovered)
{
	int ret = pfs_inplace_recover_locked(c, done, recovered, redo_inplace);

	if (ret < 0 || *done != PFS_RECOVERY_NONE)
		return ret;
	return pfs_commit_recover_locked(c, done, recovered);
}

/* An upper that holds a commit cut short into another lower is that
 * commit's until it is completed. */
static int check_not_pending(struct pfs_cctx *c)
{
	char other[PATH_MAX + 1];
	int ret = pfs_commit_upper_pending(c->st, c->upper, other, sizeof(other));

	if (ret > 0 && strcmp(other, c->lower) != 0)
		return pfs_crefuse(c, -EBUSY, "the upper %s holds an interrupted commit into %s: "
				   "prismfs recover --lower %s completes it first", c->upper,
				   other, other);
	return 0;
}

int pfs_commit(const struct pfs_commit_opts *o, char *err, size_t errlen)
{
	enum pfs_recovery rec;
	char *recovered = NULL;
	struct pfs_cctx c;
	int ret;

	ctx_init(&c, o, err, errlen);
	ret = check_commit(&c, o);
	if (ret < 0)
		goto out;
	ret = lock_parent(&c);
	if (ret < 0)
		goto out;
	ret = recover_any(&c, &rec, &recovered);
	if (ret < 0)
		goto out;
	if ((rec == PFS_RECOVERY_FINISHED || rec == PFS_RECOVERY_COMPLETED) && recovered &&
	    strcmp(recovered, c.upper) == 0) {
		/* This very upper was committed; recovery just tidied up. */
		ret = 0;
		goto out;
	}
	ret = check_not_pending(&c);
	if (ret < 0)
		goto out;
	ret = open_roots(&c);
	if (ret == 0)
		ret = pfs_chide_open(&c);
	if (ret == 0)
		ret = pfs_chide_probe(&c);
	if (ret < 0) {
		append(&c, "; nothing was changed");
		goto out;
	}
	pfs_progress_init(&c.prog, o->progress, stderr, "commit");
	pfs_progress_set_sink(&c.prog, o->sink, o->sink_arg);
	ret = pfs_commit_scan(&c);
	if (ret < 0) {
		append(&c, "; nothing was changed");
	} else {
		ret = o->atomic ? pfs_commit_atomic(&c) : pfs_commit_inplace(&c);
		if (ret < 0 && !c.committed)
			append(&c, o->atomic ? "; the lower is unchanged and the upper is kept"
					     : "; the upper is kept, run the commit again to "
					       "complete it");
	}
	pfs_progress_end(&c.prog);
out:
	free(recovered);
	ctx_free(&c);
	return ret;
}

/* --------------------------------------------------------------------
 * discard */

int pfs_discard(struct pfs_store *st, const char *upper, const char *work, char *err, size_t errlen)
{
	char *u = NULL, *w = NULL, lower[PATH_MAX + 1];
	struct stat su, sw;
	int ret;

	err[0] = '\0';
	if (!upper) {
		seterr(err, errlen, "the upper is needed");
		return -EINVAL;
	}
	ret = pfs_canon_dir("upper", upper, &u, &su, err, errlen);
	if (ret == 0 && work)
		ret = pfs_canon_dir("work directory", work, &w, &sw, err, errlen);
	if (ret < 0)
		goto out;
	if (strcmp(u, "/") == 0 || (w && strcmp(w, "/") == 0)) {
		seterr(err, errlen, "refusing to empty /");
		ret = -EINVAL;
		goto out;
	}
	if (w && (ret = check_apart("work directory", w, &sw, "upper", u, &su, err, errlen)) < 0)
		goto out;
	if ((ret = check_unused("upper", u, err, errlen)) < 0 ||
	    (w && (ret = check_unused("work directory", w, err, errlen)) < 0))
		goto out;
	ret = pfs_commit_upper_pending(st, u, lower, sizeof(lower));
	if (ret > 0) {
		/* Half applied: emptying it would leave the lower half old. */
		seterr(err, errlen, "the upper %s holds an interrupted commit into %s: prismfs "
		       "recover --lower %s completes it (and empties the upper)", u, lower, lower);
		ret = -EBUSY;
		goto out;
	}
	ret = pfs_discard_paths(st, u, w, err, errlen);
out:
	free(u);
	free(w);
	return ret;
}

/* --------------------------------------------------------------------
 * recover */

int pfs_commit_recover(struct pfs_store *store, const char *lower, enum pfs_recovery *done,
		       char *err, size_t errlen)
{
	struct pfs_commit_opts o = {.lower = lower, .store = store};
	enum pfs_recovery rec = PFS_RECOVERY_NONE;
	struct pfs_cctx c;
	struct stat st;
	int ret;

	ctx_init(&c, &o, err, errlen);
	if (!lower) {
		seterr(err, errlen, "the lower is needed");
		ret = -EINVAL;
		goto out;
	}
	ret = pfs_canon_dir("lower", lower, &c.lower, &st, err, errlen);
	if (ret == 0)
		ret = check_lower_name(&c);
	if (ret == 0)
		ret = lock_parent(&c);
	if (ret == 0)
		ret = recover_any(&c, &rec, NULL);
out:
	if (done)
		*done = rec;
	ctx_free(&c);
	return ret;
}
