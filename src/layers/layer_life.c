#include "layers/layer_life.h"
#include "util/util.h"
#include "commit/commit.h"
#include "layers/ovlfmt.h"
#include "layers/layer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

/* An upper marked as holding an in-place commit cut short into another
 * lower (or one whose recovery did not get that far) shows no true view:
 * it is refused until that commit is completed. */
static int check_upper(struct pfs_store *store, const char *upper, char *err, size_t errlen)
{
	char lower[PATH_MAX + 1];

	if (!upper || pfs_commit_upper_pending(store, upper, lower, sizeof(lower)) <= 0)
		return 0;
	seterr(err, errlen, "the upper %s holds an interrupted commit into %s: prismfs recover "
	       "--lower %s completes it first", upper, lower, lower);
	return -EBUSY;
}

int pfs_layers_recover(struct pfs_store *store, const char *source, const char *upper, char *note, size_t notelen,
		       char *err, size_t errlen)
{
	char *canon = realpath(source, NULL), *slash, *journal = NULL, *inplace = NULL;
	enum pfs_recovery done = PFS_RECOVERY_NONE;
	struct stat st;
	int ret = 0;

	note[0] = '\0';
	/* A missing SOURCE is for the mount's own checks to report. */
	if (!canon || strcmp(canon, "/") == 0)
		goto out;
	slash = strrchr(canon, '/');
	/* commit.h: the journal is .NAME.prismfs-commit beside the lower. Only
	 * then is there anything to recover; the lock pfs_commit_recover takes
	 * is not worth taking (or failing on) for every mount. */
	if (asprintf(&journal, "%.*s/.%s.prismfs-commit", (int)(slash - canon), canon,
		     slash + 1) < 0)
		journal = NULL;
	if (asprintf(&inplace, "%.*s/.%s.prismfs-inplace", (int)(slash - canon), canon,
		     slash + 1) < 0)
		inplace = NULL;
	if (!journal || !inplace) {
		ret = -ENOMEM;
		seterr(err, errlen, "out of memory");
		goto out;
	}
	if (pfs_st_stat(store, AT_FDCWD, journal, &st, AT_SYMLINK_NOFOLLOW) < 0 &&
	    pfs_st_stat(store, AT_FDCWD, inplace, &st, AT_SYMLINK_NOFOLLOW) < 0)
		goto out;
	ret = pfs_commit_recover(store, canon, &done, err, errlen);
	if (ret < 0)
		goto out;
	if (done == PFS_RECOVERY_ROLLED_BACK)
		seterr(note, notelen, "rolled back the interrupted commit of %s: "
		       "the old tree stays, the upper is kept", canon);
	else if (done == PFS_RECOVERY_FINISHED)
		seterr(note, notelen, "finished the interrupted atomic commit of %s: "
		       "the new tree stays, the upper is emptied", canon);
	else if (done == PFS_RECOVERY_COMPLETED)
		seterr(note, notelen, "completed the interrupted in-place commit of %s: "
		       "it holds the committed view, the upper is emptied", canon);
out:
	if (ret == 0)
		ret = check_upper(store, upper, err, errlen);
	free(journal);
	free(inplace);
	free(canon);
	return ret;
}


/* .NAME.prismfs-work beside the upper, made if missing; like the kernel's
 * workdir it must be on the upper's filesystem (copy-up renames from it). */
static int default_work(struct pfs_layer_paths *lp, const struct stat *ust, char *err,
			size_t errlen)
{
	const char *slash = strrchr(lp->upper, '/');
	struct stat wst;
	int ret;

	if (strcmp(lp->upper, "/") == 0) {
		seterr(err, errlen, "the upper cannot be /");
		return -EINVAL;
	}
	if (asprintf(&lp->work, "%.*s/.%s.prismfs-work", (int)(slash - lp->upper), lp->upper,
		     slash + 1) < 0) {
		lp->work = NULL;
		seterr(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ret = pfs_st_mkdir(lp->store, AT_FDCWD, lp->work, 0700);
	if (ret == 0) {
		lp->work_made = true;
	} else if (ret != -EEXIST) {
		seterr(err, errlen, "cannot make the work directory %s: %s (give --work DIR on "
		       "the upper's filesystem)", lp->work, strerror(-ret));
		return ret;
	}
	if (pfs_st_stat(lp->store, AT_FDCWD, lp->work, &wst, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISDIR(wst.st_mode)) {
		seterr(err, errlen, "%s is in the way of the work directory: it is not a "
		       "directory (give --work DIR)", lp->work);
		return -ENOTDIR;
	}
	if (wst.st_dev != ust->st_dev) {
		seterr(err, errlen, "the upper %s is a filesystem of its own, so the work "
		       "directory beside it would not be on it: give --work DIR on the "
		       "upper's filesystem", lp->upper);
		pfs_layer_paths_abandon(lp);
		return -EXDEV;
	}
	return 0;
}

int pfs_layer_paths_get(struct pfs_layer_paths *lp, struct pfs_store *store,
			const struct pfs_layer_spec *cfg, const char *source, char *err, size_t errlen)
{
	struct stat ust, wst;
	int ret;

	memset(lp, 0, sizeof(*lp));
	lp->store = store;
	if (!cfg->upper)
		goto lowers; /* a read-only mount of lowers only: no work directory */
	ret = pfs_canon_dir("upper directory", cfg->upper, &lp->upper, &ust, err, errlen);
	if (ret < 0)
		return ret;
	if (cfg->work)
		ret = pfs_canon_dir("work directory", cfg->work, &lp->work, &wst, err, errlen);
	else
		ret = default_work(lp, &ust, err, errlen);
	if (ret < 0)
		return ret;
lowers:
	lp->lowers = calloc(cfg->nlowers + 1, sizeof(*lp->lowers));
	if (!lp->lowers) {
		seterr(err, errlen, "out of memory");
		return -ENOMEM;
	}
	lp->whiteout = cfg->whiteout;
	lp->lowers[lp->nlowers++] = strdup(source);
	for (size_t i = 0; i < cfg->nlowers; i++) {
		char *p = realpath(cfg->lowers[i], NULL);

		/* Left as given when it does not resolve: pfs_layers_open
		 * says what is wrong with it. */
		lp->lowers[lp->nlowers++] = p ? p : strdup(cfg->lowers[i]);
	}
	for (size_t i = 0; i < lp->nlowers; i++) {
		if (!lp->lowers[i]) {
			seterr(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	return 0;
}

void pfs_layer_paths_abandon(struct pfs_layer_paths *lp)
{
	if (lp->work_made && lp->work)
		pfs_st_unlink(lp->store, AT_FDCWD, lp->work, AT_REMOVEDIR);
	lp->work_made = false;
}

void pfs_layer_paths_free(struct pfs_layer_paths *lp)
{
	free(lp->upper);
	free(lp->work);
	for (size_t i = 0; i < lp->nlowers; i++)
		free(lp->lowers[i]);
	free(lp->lowers);
	memset(lp, 0, sizeof(*lp));
}

void pfs_layers_record_lowers(const struct pfs_layer_paths *lp)
{
	static const char *const ns[] = {"trusted.overlay.", "user.overlay."};
	struct pfs_store *s = lp->store;
	/* The upper itself ("." of it): lp->upper is canonical, no symlink. */
	int fd = pfs_st_openat(s, AT_FDCWD, lp->upper, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	struct pfs_ref up = pfs_ref_at(fd, ".");
	char *val = NULL;
	size_t len = 0;

	if (fd < 0)
		return; /* nothing could be written there either */

	for (size_t i = 1; i < lp->nlowers; i++) {
		size_t n = strlen(lp->lowers[i]) + 1;
		char *v = realloc(val, len + n);

		if (!v) {
			free(val);
			val = NULL;
			len = 0;
			break;
		}
		val = v;
		memcpy(val + len, lp->lowers[i], n);
		len += n;
	}
	for (size_t i = 0; i < 2; i++) {
		char x[64];

		snprintf(x, sizeof(x), "%s%s", ns[i], PFS_OVL_LOWERS);
		if (lp->nlowers < 2) {
			pfs_st_removexattr(s, up, x);
			continue;
		}
		/* Too long for the filesystem (or no memory): still say that
		 * there are lowers below, so no commit forgets them. */
		if ((!val || pfs_st_setxattr(s, up, x, val, len, 0) < 0) &&
		    pfs_st_setxattr(s, up, x, "?", 1, 0) < 0)
			continue;
		break;
	}
	free(val);
	close(fd);
}

int pfs_layers_finalize(const struct pfs_layer_paths *lp, enum pfs_action action,
			pfs_progress_sink sink, void *sink_arg, char *msg, size_t msglen)
{
	struct pfs_commit_opts o = {.upper = lp->upper, .lower = lp->lowers[0],
				    .below = (const char *const *)lp->lowers + 1,
				    .nbelow = lp->nlowers - 1, .whiteout = lp->whiteout,
				    .work = lp->work, .sink = sink, .sink_arg = sink_arg,
				    .store = lp->store};
	size_t n;
	int ret;

	msg[0] = '\0';
	switch (action) {
	case PFS_ACT_NONE:
	case PFS_ACT_PRESERVE:
		return 0;
	case PFS_ACT_DISCARD:
		snprintf(msg, msglen, "discard at unmount: ");
		n = strlen(msg);
		ret = pfs_discard(lp->store, lp->upper, lp->work, msg + n, msglen - n);
		if (ret == 0)
			snprintf(msg, msglen, "discarded the changes in %s", lp->upper);
		return ret;
	case PFS_ACT_COMMIT:
	case PFS_ACT_COMMIT_ATOMIC:
		o.atomic = action == PFS_ACT_COMMIT_ATOMIC;
		snprintf(msg, msglen, "%s at unmount: ", pfs_action_name(action));
		n = strlen(msg);
		ret = pfs_commit(&o, msg + n, msglen - n);
		if (ret == 0)
			snprintf(msg, msglen, "committed %s to %s%s", lp->upper, lp->lowers[0],
				 o.atomic ? " atomically" : "");
		return ret;
	}
	snprintf(msg, msglen, "unknown action %d at unmount", (int)action);
	return -EINVAL;
}
