/* commit_resume: the in-place commit's crash protocol and its journal.
 *
 * An in-place commit changes L one entry at a time, so a crash cannot be
 * undone: it must be finished, and finished the right way. While U is
 * whole, applying it again is harmless (what is done already is found
 * equal and kept) and U over L still shows the committed view. Once the
 * emptying of U has begun, U no longer describes the view: an opaque
 * directory whose new children are already gone from U would, applied
 * again, delete those children from L; a whiteout gone from U no longer
 * hides; a hard-link group with a name gone is split. So the rule is:
 * never apply an upper that emptying has touched. The journal records on
 * which side of that line the commit is.
 *
 * Beside the lower L (in its parent P), during an in-place commit only:
 *   .L.prismfs-inplace       the journal: the state, the upper (path,
 *                            device, inode), the work directory, whether
 *                            U carries the mark, and the lowers below L
 *                            with the whiteout form (an apply again must
 *                            hide from them what the first one hid)
 *                            and the moves of renamed lower directories
 *                            and kept data of renamed metadata-only copies
 *                            (commit_redir.c), with whether all of them
 *                            have left their places ("detached")
 *   .L.prismfs-inplace.tmp   a journal being written
 * and on U's root overlay.prismfs.commit = L: U holds an unfinished
 * commit into L, so it is neither mounted over another lower, committed
 * into another lower nor discarded before the commit is finished.
 *
 * 1. journal "applying", then mark U          (crash: apply again)
 * 2. apply U to L, syncfs(L)                   (crash: apply again)
 *    (first the moves: out to the stage, syncfs(L), journal "detached",
 *    in to their places; applying again goes by the journal's moves, not
 *    by U's redirects, which no longer lead to them)
 * 3. journal "applied"                         (crash: finish emptying)
 * 4. empty U and W, unmark U, drop the journal (crash: finish emptying)
 *
 * The journal is written before the mark: a mark that no journal beside
 * its L names could not be found from L. The mark holds L's path, and "U
 * marked" below means marked for this L: a mark naming another lower is
 * another commit's (this one's journal outlived it).
 *
 * Recovery (prismfs recover, the start of every commit of L, the mount of
 * L with an upper) reads the journal, all under P's lock:
 * - U is not the journal's directory (another inode): touch nothing;
 * - "applying" and U unmarked though the journal says it is marked: the
 *   crash came before step 1 ended, nothing was applied: drop the journal,
 *   U is kept as it is;
 * - "applying" otherwise: U is whole; apply it again, then 3 and 4;
 * - "applied" and U marked (or unmarkable): finish step 4;
 * - "applied" and U unmarked: the crash came between the unmark and the
 *   journal's removal; drop it.
 * Only the journal's state decides whether U is applied, never what is
 * left in U.
 *
 * A failure the commit sees itself (not a crash) during step 2 unmarks U
 * and drops the journal: U is whole, U over L shows the view, and the
 * commit run again completes it — unless a lower directory has moved: U
 * over L no longer shows the view, so both stay and recovery (the commit
 * run again) completes it as after a crash. A failure in step 4 keeps both: from then
 * on only finishing step 4 may touch U. Where U cannot carry an extended
 * attribute, the journal says so and recovery goes by the journal alone.
 * A mount of U over another lower, a commit of U into another lower and a
 * discard of U are refused while U is marked (layer_life.c, commit.c). */
#include "commit/commit_int.h"
#include "layers/ovlfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JOURNAL_MAGIC "prismfs-inplace 1"
#define JOURNAL_MAX (1 << 20)
#define MARK "prismfs.commit" /* overlay.<this>, see ovlfmt.h */

struct ijournal {
	bool applied, marked, detached;
	struct pfs_cmove *moves; /* the renamed lower directories' moves */
	size_t nmoves;
	unsigned long long dev, ino; /* U's root */
	char *upper, *work;
	char **below; /* the lowers below L, highest first */
	size_t nbelow;
	int whiteout; /* enum pfs_whiteout */
};

struct inames {
	char journal[NAME_MAX + 1], tmp[NAME_MAX + 1];
};

static void make_names(const struct pfs_cctx *c, struct inames *n)
{
	snprintf(n->journal, sizeof(n->journal), ".%s.prismfs-inplace", c->base);
	snprintf(n->tmp, sizeof(n->tmp), ".%s.prismfs-inplace.tmp", c->base);
}

static void ij_free(struct ijournal *j)
{
	free(j->upper);
	free(j->work);
	for (size_t i = 0; i < j->nbelow; i++)
		free(j->below[i]);
	free(j->below);
	for (size_t i = 0; i < j->nmoves; i++) {
		free(j->moves[i].from);
		free(j->moves[i].to);
	}
	free(j->moves);
	memset(j, 0, sizeof(*j));
}

/* The journal's fields of how the commit was asked, from c. */
static void ij_from(const struct pfs_cctx *c, struct ijournal *j)
{
	j->upper = c->upper;
	j->work = c->work;
	j->below = (char **)c->o->below;
	j->nbelow = c->o->nbelow;
	j->whiteout = (int)c->o->whiteout;
	j->moves = c->redir.v;
	j->nmoves = c->redir.n;
	j->detached = c->redir.detached;
}

/* Fields end in NUL, so any path fits (a newline too). */
static int ij_write(struct pfs_cctx *c, const struct inames *n, const struct ijournal *j)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	int fd, len, ret = 0;

	if (!f)
		return pfs_cfail(c, -ENOMEM, "out of memory");
	fprintf(f, "%s%cstate %s%cdev %llu%cino %llu%cmarked %d%cwhiteout %d%cupper %s%c",
		JOURNAL_MAGIC, 0, j->applied ? "applied" : "applying", 0, j->dev, 0, j->ino, 0,
		j->marked ? 1 : 0, 0, j->whiteout, 0, j->upper, 0);
	if (j->work)
		fprintf(f, "work %s%c", j->work, 0);
	for (size_t i = 0; i < j->nbelow; i++)
		fprintf(f, "below %s%c", j->below[i], 0);
	for (size_t i = 0; i < j->nmoves; i++)
		fprintf(f, "%s %s%cto %s%c", j->moves[i].file ? "keep" : "move", j->moves[i].from, 0,
			j->moves[i].to, 0);
	if (j->detached)
		fprintf(f, "detached%c", 0);
	if (fclose(f) != 0 || size > JOURNAL_MAX) {
		free(buf);
		return pfs_cfail(c, -ENOMEM, "cannot write the commit journal: too long");
	}
	len = (int)size;
	fd = pfs_st_openat(c->st, c->pfd, n->tmp,
			   O_CREAT | O_TRUNC | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = fd;
	} else {
		errno = 0;
		if (write(fd, buf, (size_t)len) != len)
			ret = errno ? -errno : -EIO;
		if (ret == 0)
			ret = pfs_st_sync(c->st, fd, false);
		close(fd);
	}
	free(buf);
	if (ret == 0)
		ret = pfs_st_rename(c->st, c->pfd, n->tmp, c->pfd, n->journal, 0);
	if (ret == 0)
		ret = pfs_st_sync(c->st, c->pfd, false);
	if (ret < 0)
		return pfs_cfail(c, ret, "cannot write the commit journal %s/../%s", c->lower,
				 n->journal);
	return 0;
}

/* 0 and *j, -ENOENT when there is none, or another -errno. */
static int ij_read(struct pfs_cctx *c, const struct inames *n, struct ijournal *j)
{
	bool magic = false, state = false, have_id = false;
	char *buf, *p;
	ssize_t len;
	int fd, ret = 0, marked = 1;

	memset(j, 0, sizeof(*j));
	fd = pfs_st_openat(c->st, c->pfd, n->journal, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	buf = malloc(JOURNAL_MAX + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	len = read(fd, buf, JOURNAL_MAX);
	close(fd);
	if (len < 0) {
		ret = -errno;
		goto out;
	}
	buf[len] = '\0';
	for (p = buf; p < buf + len; p += strlen(p) + 1) {
		if (strcmp(p, JOURNAL_MAGIC) == 0)
			magic = true;
		else if (strcmp(p, "state applying") == 0)
			state = true;
		else if (strcmp(p, "state applied") == 0)
			state = j->applied = true;
		else if (sscanf(p, "dev %llu", &j->dev) == 1)
			;
		else if (sscanf(p, "ino %llu", &j->ino) == 1)
			have_id = true;
		else if (sscanf(p, "marked %d", &marked) == 1)
			;
		else if (sscanf(p, "whiteout %d", &j->whiteout) == 1)
			;
		else if (strncmp(p, "upper ", 6) == 0 && !j->upper)
			j->upper = strdup(p + 6);
		else if (strncmp(p, "work ", 5) == 0 && !j->work)
			j->work = strdup(p + 5);
		else if (strncmp(p, "below ", 6) == 0) {
			char **nb = realloc(j->below, (j->nbelow + 1) * sizeof(*nb));

			if (!nb || !(nb[j->nbelow] = strdup(p + 6))) {
				if (nb)
					j->below = nb;
				ret = -ENOMEM;
				goto out;
			}
			j->below = nb;
			j->nbelow++;
		} else if (strncmp(p, "move ", 5) == 0 || strncmp(p, "keep ", 5) == 0) {
			struct pfs_cmove *nm = realloc(j->moves, (j->nmoves + 1) * sizeof(*nm));

			if (nm)
				j->moves = nm;
			if (!nm || !(nm[j->nmoves].from = strdup(p + 5))) {
				ret = -ENOMEM;
				goto out;
			}
			nm[j->nmoves].file = p[0] == 'k';
			nm[j->nmoves++].to = NULL;
		} else if (strncmp(p, "to ", 3) == 0) {
			if (!j->nmoves || j->moves[j->nmoves - 1].to) {
				ret = -EBADMSG;
				goto out;
			}
			if (!(j->moves[j->nmoves - 1].to = strdup(p + 3))) {
				ret = -ENOMEM;
				goto out;
			}
		} else if (strcmp(p, "detached") == 0) {
			j->detached = true;
		}
	}
	for (size_t i = 0; i < j->nmoves; i++)
		if (!j->moves[i].to)
			ret = -EBADMSG;
	if (ret < 0)
		goto out;
	j->marked = marked != 0;
	if (!magic || !state || !have_id || !j->upper || j->upper[0] != '/')
		ret = -EBADMSG;
out:
	free(buf);
	if (ret < 0)
		ij_free(j);
	return ret;
}

static int drop_journal(struct pfs_cctx *c, const struct inames *n)
{
	int ret = pfs_st_unlink(c->st, c->pfd, n->journal, 0);

	if (ret < 0 && ret != -ENOENT)
		return pfs_cfail(c, ret, "cannot remove the commit journal %s/../%s", c->lower,
				 n->journal);
	ret = pfs_st_sync(c->st, c->pfd, false);
	if (ret < 0)
		return pfs_cfail(c, ret, "cannot sync the parent of %s", c->lower);
	return 0;
}

/* Which lower U's root is marked for: its length, 0 when unmarked, or
 * -errno. */
static ssize_t mark_get(struct pfs_store *st, int ufd, char *lower, size_t len)
{
	ssize_t n = pfs_ovl_get(st, pfs_ref_fd(ufd), MARK, lower, len);

	if (n == -ENODATA || n == -ENOTSUP || n == -EOPNOTSUPP)
		return 0;
	return n;
}

static bool unsupported(int err)
{
	return err == -ENOTSUP || err == -EOPNOTSUPP || err == -EPERM;
}

/* trusted. as the kernel's own marks where we may, else user.; *marked
 * false when U can carry neither. */
static int mark_set(struct pfs_cctx *c, int ufd, bool *marked)
{
	static const char *const names[] = {"trusted.overlay." MARK, "user.overlay." MARK};
	int ret = -ENOTSUP;

	*marked = false;
	for (size_t i = 0; i < 2 && !*marked; i++) {
		ret = pfs_st_setxattr(c->st, pfs_ref_fd(ufd), names[i], c->lower, strlen(c->lower),
				      0);
		*marked = ret == 0;
	}
	if (!*marked && !unsupported(ret))
		return pfs_cfail(c, ret, "cannot mark %s as being committed", c->upper);
	if (*marked && (ret = pfs_st_sync(c->st, ufd, false)) < 0)
		return pfs_cfail(c, ret, "cannot sync %s", c->upper);
	return 0;
}

static int mark_drop(struct pfs_cctx *c, int ufd)
{
	static const char *const names[] = {"trusted.overlay." MARK, "user.overlay." MARK};

	int ret;

	for (size_t i = 0; i < 2; i++) {
		ret = pfs_st_removexattr(c->st, pfs_ref_fd(ufd), names[i]);
		if (ret < 0 && ret != -ENODATA && !unsupported(ret))
			return pfs_cfail(c, ret, "cannot unmark %s", c->upper);
	}
	ret = pfs_st_sync(c->st, ufd, false);
	if (ret < 0)
		return pfs_cfail(c, ret, "cannot sync %s", c->upper);
	return 0;
}

static int same_lower(struct pfs_store *st, int ufd, const char *lower, bool *marked)
{
	char buf[PATH_MAX + 1];
	ssize_t n = mark_get(st, ufd, buf, sizeof(buf));

	if (n < 0)
		return (int)n;
	*marked = n > 0 && strcmp(buf, lower) == 0;
	return 0;
}

int pfs_inplace_begin(struct pfs_cctx *c)
{
	struct ijournal j = {.marked = true};
	struct inames n;
	struct stat st;
	bool marked;
	int ret;

	make_names(c, &n);
	ij_from(c, &j);
	if (fstat(c->uroot, &st) < 0)
		return pfs_cfail(c, -errno, "cannot stat %s", c->upper);
	j.dev = st.st_dev;
	j.ino = st.st_ino;
	/* Journal first: a mark with no journal would name a commit nobody
	 * can find from L. */
	ret = ij_write(c, &n, &j);
	if (ret < 0)
		return ret;
	pfs_commit_crashpoint("inplace-journal");
	ret = mark_set(c, c->uroot, &marked);
	c->marked = marked;
	if (ret == 0 && !marked) {
		j.marked = false;
		ret = ij_write(c, &n, &j);
	}
	if (ret < 0) {
		pfs_inplace_abandon(c);
		return ret;
	}
	pfs_commit_crashpoint("inplace-marked");
	return 0;
}

int pfs_inplace_detached(struct pfs_cctx *c)
{
	struct ijournal j = {.marked = c->marked};
	struct inames n;
	struct stat st;

	make_names(c, &n);
	c->redir.detached = true;
	ij_from(c, &j);
	if (fstat(c->uroot, &st) < 0)
		return pfs_cfail(c, -errno, "cannot stat %s", c->upper);
	j.dev = st.st_dev;
	j.ino = st.st_ino;
	return ij_write(c, &n, &j);
}

int pfs_inplace_applied(struct pfs_cctx *c)
{
	struct ijournal j = {.applied = true, .marked = c->marked};
	struct inames n;
	struct stat st;

	make_names(c, &n);
	ij_from(c, &j);
	if (fstat(c->uroot, &st) < 0)
		return pfs_cfail(c, -errno, "cannot stat %s", c->upper);
	j.dev = st.st_dev;
	j.ino = st.st_ino;
	return ij_write(c, &n, &j);
}

void pfs_inplace_abandon(struct pfs_cctx *c)
{
	struct inames n;
	char *err = c->err, scratch[PATH_MAX];
	size_t errlen = c->errlen;

	/* Best effort, the first error is the one reported: unmarked first,
	 * so that a journal left behind is read as "nothing applied". */
	make_names(c, &n);
	c->err = scratch;
	c->errlen = sizeof(scratch);
	scratch[0] = '\0';
	if (mark_drop(c, c->uroot) == 0)
		drop_journal(c, &n);
	c->err = err;
	c->errlen = errlen;
}

/* Step 4, for the commit and for recovery alike. */
static int finish(struct pfs_cctx *c, const struct inames *n, const char *upper,
		  const char *work)
{
	int ufd, ret;

	ret = pfs_empty_layers(c->st, upper, work, "inplace-emptying", c->err, c->errlen);
	if (ret < 0)
		return ret;
	pfs_commit_crashpoint("inplace-emptied");
	ufd = pfs_st_openat(c->st, AT_FDCWD, upper, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
			    0);
	if (ufd < 0)
		return pfs_cfail(c, ufd, "cannot open %s", upper);
	ret = mark_drop(c, ufd);
	close(ufd);
	if (ret < 0)
		return ret;
	pfs_commit_crashpoint("inplace-unmarked");
	return drop_journal(c, n);
}

int pfs_inplace_end(struct pfs_cctx *c)
{
	struct inames n;

	make_names(c, &n);
	return finish(c, &n, c->upper, c->work);
}

int pfs_inplace_recover_locked(struct pfs_cctx *c, enum pfs_recovery *done,
			       char **recovered_upper, pfs_inplace_redo redo)
{
	struct ijournal j;
	struct inames n;
	struct stat st;
	bool marked = false;
	int ufd = -1, ret;

	*done = PFS_RECOVERY_NONE;
	if (recovered_upper)
		*recovered_upper = NULL;
	make_names(c, &n);
	ret = ij_read(c, &n, &j);
	if (ret == -ENOENT) {
		pfs_st_unlink(c->st, c->pfd, n.tmp, 0); /* a journal write cut short */
		return 0;
	}
	if (ret < 0)
		return pfs_cfail(c, ret, "cannot read the commit journal %s/../%s; not touching "
				 "anything", c->lower, n.journal);
	ufd = pfs_st_openat(c->st, AT_FDCWD, j.upper, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
			    0);
	ret = ufd < 0 ? ufd : fstat(ufd, &st) < 0 ? -errno : 0;
	if (ret < 0) {
		ret = pfs_cfail(c, ret, "cannot open %s, the upper of the interrupted commit "
				"of %s (journal %s/../%s)", j.upper, c->lower, c->lower,
				n.journal);
		goto out;
	}
	if ((unsigned long long)st.st_dev != j.dev || (unsigned long long)st.st_ino != j.ino) {
		ret = pfs_crefuse(c, -ESTALE, "%s is not the upper of the interrupted commit of "
				  "%s any more (journal %s/../%s); not touching anything",
				  j.upper, c->lower, c->lower, n.journal);
		goto out;
	}
	ret = same_lower(c->st, ufd, c->lower, &marked);
	if (ret < 0) {
		pfs_cfail(c, ret, "cannot read %s", j.upper);
		goto out;
	}
	close(ufd);
	ufd = -1;
	if (j.marked && !marked) {
		/* Before the mark or after the unmark: only the journal is left. */
		ret = drop_journal(c, &n);
		if (ret == 0)
			*done = j.applied ? PFS_RECOVERY_COMPLETED : PFS_RECOVERY_ROLLED_BACK;
	} else if (j.applied) {
		ret = finish(c, &n, j.upper, j.work);
		if (ret == 0)
			*done = PFS_RECOVERY_COMPLETED;
	} else {
		struct pfs_commit_opts o = {
			.upper = j.upper, .lower = c->lower, .work = j.work,
			.below = (const char *const *)j.below, .nbelow = j.nbelow,
			.whiteout = (enum pfs_whiteout)j.whiteout, .store = c->st,
		};

		/* The moves already made are the journal's to tell. */
		c->redir = (struct pfs_credir){.v = j.moves, .n = j.nmoves, .cap = j.nmoves,
					       .resumed = true, .detached = j.detached};
		j.moves = NULL;
		j.nmoves = 0;
		ret = redo(c, &o);
		if (ret == 0)
			*done = PFS_RECOVERY_COMPLETED;
	}
	if (ret == 0 && *done == PFS_RECOVERY_COMPLETED && recovered_upper) {
		*recovered_upper = j.upper;
		j.upper = NULL;
	}
out:
	if (ufd >= 0)
		close(ufd);
	ij_free(&j);
	return ret;
}

int pfs_commit_upper_pending(struct pfs_store *st, const char *upper, char *lower, size_t len)
{
	int fd = pfs_st_openat(st, AT_FDCWD, upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	ssize_t n;

	if (fd < 0)
		return fd;
	n = mark_get(st, fd, lower, len);
	close(fd);
	return n < 0 ? (int)n : n > 0;
}
