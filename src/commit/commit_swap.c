/* commit_swap: the atomic commit's sequence and its journal.
 *
 * Beside the lower L (in its parent P) live, during a commit only:
 *   .L.prismfs-commit   the journal: the upper, and the inode numbers of
 *                       the old tree and of the new one
 *   .L.prismfs-new      the new tree while it is built; after the swap,
 *                       the old tree until it is deleted
 *
 * 1. journal "building" with the old inode        (crash: roll back)
 * 2. mkdir the new tree, journal its inode         (crash: roll back)
 * 3. build, fsync every directory, syncfs          (crash: roll back)
 * 4. renameat2(RENAME_EXCHANGE) new <-> L, fsync P (crash: finish)
 * 5. journal "swapped", delete the old tree, empty the upper, drop the
 *    journal                                       (crash: finish)
 *
 * Which side of step 4 a crash fell on is read from L itself: its inode is
 * the old tree's or the new tree's. The journal state is only a hint, so a
 * crash between the exchange and the journal write is decided correctly. */
#include "commit/commit_int.h"
#include "store/rmtree.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JOURNAL_MAGIC "prismfs-commit 1"
#define JOURNAL_MAX 65536

enum jstate { J_BUILDING, J_SWAPPED };

struct journal {
	enum jstate state;
	unsigned long long dev, old_ino, new_ino; /* new_ino 0: not made yet */
	char *upper, *work;
};

struct names {
	char journal[NAME_MAX + 1], tmp[NAME_MAX + 1], newdir[NAME_MAX + 1];
};

static void make_names(const struct pfs_cctx *c, struct names *n)
{
	snprintf(n->journal, sizeof(n->journal), ".%s.prismfs-commit", c->base);
	snprintf(n->tmp, sizeof(n->tmp), ".%s.prismfs-commit.tmp", c->base);
	snprintf(n->newdir, sizeof(n->newdir), ".%s.prismfs-new", c->base);
}

static void journal_free(struct journal *j)
{
	free(j->upper);
	free(j->work);
	memset(j, 0, sizeof(*j));
}

/* Written whole to a temporary name, made durable, renamed into place and
 * the rename made durable: the journal is always one complete version. */
static int journal_write(struct pfs_cctx *c, const struct names *n, const struct journal *j)
{
	FILE *f;
	int fd, ret = 0;

	fd = pfs_st_openat(c->st, c->pfd, n->tmp,
			   O_CREAT | O_TRUNC | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return pfs_cfail(c, fd, "cannot write the journal %s/../%s", c->lower, n->tmp);
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return pfs_cfail(c, -ENOMEM, "out of memory");
	}
	fprintf(f, "%s\nstate %s\ndev %llu\nold %llu\nnew %llu\nupper %s\n", JOURNAL_MAGIC,
		j->state == J_SWAPPED ? "swapped" : "building", j->dev, j->old_ino, j->new_ino,
		j->upper);
	if (j->work)
		fprintf(f, "work %s\n", j->work);
	if (fflush(f) != 0)
		ret = -errno;
	if (ret == 0)
		ret = pfs_st_sync(c->st, fileno(f), false);
	if (fclose(f) != 0 && ret == 0)
		ret = -errno;
	if (ret == 0)
		ret = pfs_st_rename(c->st, c->pfd, n->tmp, c->pfd, n->journal, 0);
	if (ret == 0)
		ret = pfs_st_sync(c->st, c->pfd, false);
	if (ret < 0)
		return pfs_cfail(c, ret, "cannot write the journal %s/../%s", c->lower, n->journal);
	return 0;
}

/* 0 and *j, -ENOENT when there is none, or another -errno. */
static int journal_read(struct pfs_cctx *c, const struct names *n, struct journal *j)
{
	char *buf = NULL, *line, *save = NULL;
	bool magic = false, have_old = false;
	ssize_t len;
	int fd, ret = 0;

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
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strcmp(line, JOURNAL_MAGIC) == 0)
			magic = true;
		else if (strcmp(line, "state building") == 0)
			j->state = J_BUILDING;
		else if (strcmp(line, "state swapped") == 0)
			j->state = J_SWAPPED;
		else if (sscanf(line, "dev %llu", &j->dev) == 1)
			;
		else if (sscanf(line, "old %llu", &j->old_ino) == 1)
			have_old = true;
		else if (sscanf(line, "new %llu", &j->new_ino) == 1)
			;
		else if (strncmp(line, "upper ", 6) == 0 && !j->upper)
			j->upper = strdup(line + 6);
		else if (strncmp(line, "work ", 5) == 0 && !j->work)
			j->work = strdup(line + 5);
	}
	if (!magic || !have_old || !j->upper || j->upper[0] != '/')
		ret = -EBADMSG;
out:
	free(buf);
	if (ret < 0)
		journal_free(j);
	return ret;
}

static bool same(const struct stat *st, unsigned long long dev, unsigned long long ino)
{
	return ino && (unsigned long long)st->st_dev == dev &&
	       (unsigned long long)st->st_ino == ino;
}

static int remove_sibling(struct pfs_cctx *c, const char *name, const char *what)
{
	char where[PATH_MAX];
	int ret = pfs_rmtree_at(c->st, c->pfd, name, where, sizeof(where));

	if (ret < 0)
		return pfs_cfail(c, ret, "cannot remove %s at %s/../%s", what, c->lower, where);
	ret = pfs_st_sync(c->st, c->pfd, false);
	if (ret < 0)
		return pfs_cfail(c, ret, "cannot sync the parent of %s", c->lower);
	return 0;
}

static int drop_journal(struct pfs_cctx *c, const struct names *n)
{
	int ret = pfs_st_unlink(c->st, c->pfd, n->journal, 0);

	if (ret < 0 && ret != -ENOENT)
		return pfs_cfail(c, ret, "cannot remove the journal %s/../%s", c->lower,
				 n->journal);
	ret = pfs_st_sync(c->st, c->pfd, false);
	if (ret < 0)
		return pfs_cfail(c, ret, "cannot sync the parent of %s", c->lower);
	return 0;
}

/* After the swap: the old tree, the upper, then the journal. */
static int finish(struct pfs_cctx *c, const struct names *n, struct journal *j)
{
	struct stat st;
	int ret;

	if (j->state != J_SWAPPED) {
		j->state = J_SWAPPED;
		ret = journal_write(c, n, j);
		if (ret < 0)
			return ret;
		pfs_commit_crashpoint("atomic-journal-swapped");
	}
	if (pfs_st_stat(c->st, c->pfd, n->newdir, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!same(&st, j->dev, j->old_ino))
			return pfs_crefuse(c, -EEXIST,
					   "%s/../%s is not the old tree the journal names; "
					   "not touching it", c->lower, n->newdir);
		ret = remove_sibling(c, n->newdir, "the old tree");
		if (ret < 0)
			return ret;
	}
	pfs_commit_crashpoint("atomic-old-removed");
	ret = pfs_discard_paths(c->st, j->upper, j->work, c->err, c->errlen);
	if (ret < 0)
		return ret;
	pfs_commit_crashpoint("atomic-upper-removed");
	return drop_journal(c, n);
}

/* Before the swap: the partial new tree goes, the upper stays. */
static int roll_back(struct pfs_cctx *c, const struct names *n, const struct journal *j)
{
	struct stat st;
	int ret;

	if (pfs_st_stat(c->st, c->pfd, n->newdir, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		/* Made by us: its inode is recorded, or the crash came before. */
		if (j->new_ino && !same(&st, j->dev, j->new_ino))
			return pfs_crefuse(c, -EEXIST,
					   "%s/../%s is not the new tree the journal names; "
					   "not touching it", c->lower, n->newdir);
		ret = remove_sibling(c, n->newdir, "the unfinished new tree");
		if (ret < 0)
			return ret;
	}
	return drop_journal(c, n);
}

int pfs_commit_recover_locked(struct pfs_cctx *c, enum pfs_recovery *done,
			      char **recovered_upper)
{
	struct journal j;
	struct names n;
	struct stat st;
	int ret;

	*done = PFS_RECOVERY_NONE;
	if (recovered_upper)
		*recovered_upper = NULL;
	make_names(c, &n);
	ret = journal_read(c, &n, &j);
	if (ret == -ENOENT) {
		pfs_st_unlink(c->st, c->pfd, n.tmp, 0); /* a journal write cut short */
		if (pfs_st_stat(c->st, c->pfd, n.newdir, &st, AT_SYMLINK_NOFOLLOW) == 0)
			return pfs_crefuse(c, -EEXIST,
					   "%s/../%s exists but no commit journal names it; "
					   "not touching it (remove it if it is not needed)",
					   c->lower, n.newdir);
		return 0;
	}
	if (ret < 0)
		return pfs_cfail(c, ret, "cannot read the commit journal %s/../%s; not touching "
				 "anything", c->lower, n.journal);
	if ((ret = pfs_st_stat(c->st, c->pfd, c->base, &st, AT_SYMLINK_NOFOLLOW)) < 0) {
		pfs_cfail(c, ret, "cannot stat %s", c->lower);
	} else if (same(&st, j.dev, j.new_ino)) {
		ret = finish(c, &n, &j);
		if (ret == 0) {
			*done = PFS_RECOVERY_FINISHED;
			if (recovered_upper) {
				*recovered_upper = j.upper;
				j.upper = NULL;
			}
		}
	} else if (same(&st, j.dev, j.old_ino)) {
		ret = roll_back(c, &n, &j);
		if (ret == 0)
			*done = PFS_RECOVERY_ROLLED_BACK;
	} else {
		ret = pfs_crefuse(c, -ESTALE, "%s is neither the old nor the new tree of the "
				  "interrupted commit in %s/../%s; not touching anything",
				  c->lower, c->lower, n.journal);
	}
	journal_free(&j);
	return ret;
}

int pfs_commit_atomic(struct pfs_cctx *c)
{
	struct journal j = {.state = J_BUILDING};
	struct names n;
	struct stat st;
	int nfd = -1, ret;

	make_names(c, &n);
	ret = pfs_st_stat(c->st, c->pfd, c->base, &st, AT_SYMLINK_NOFOLLOW);
	if (ret < 0)
		return pfs_cfail(c, ret, "cannot stat %s", c->lower);
	if (pfs_st_stat(c->st, c->pfd, n.newdir, &(struct stat){0}, AT_SYMLINK_NOFOLLOW) == 0)
		return pfs_crefuse(c, -EEXIST, "cannot build the new tree at %s/../%s: it exists "
				   "already (not made by prismfs: no journal names it)", c->lower,
				   n.newdir);
	if (asprintf(&c->newroot, "%s/../%s", c->lower, n.newdir) < 0) {
		c->newroot = NULL;
		return pfs_cfail(c, -ENOMEM, "out of memory");
	}
	j.dev = st.st_dev;
	j.old_ino = st.st_ino;
	j.upper = c->upper;
	j.work = c->work;
	ret = journal_write(c, &n, &j);
	if (ret < 0)
		goto undo;
	pfs_commit_crashpoint("atomic-journal");
	ret = pfs_st_mkdir(c->st, c->pfd, n.newdir, 0700);
	if (ret < 0) {
		pfs_cfail(c, ret, "cannot create %s", c->newroot);
		goto undo;
	}
	nfd = pfs_st_openat(c->st, c->pfd, n.newdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
			    0);
	ret = nfd < 0 ? nfd : fstat(nfd, &st) < 0 ? -errno : 0;
	if (ret < 0) {
		pfs_cfail(c, ret, "cannot open %s", c->newroot);
		goto undo;
	}
	j.new_ino = st.st_ino;
	ret = journal_write(c, &n, &j);
	if (ret < 0)
		goto undo;
	pfs_commit_crashpoint("atomic-mkdir");
	ret = pfs_commit_build(c, nfd);
	if (ret < 0)
		goto undo;
	/* Shared and cloned data too, not only what we wrote and fsynced. */
	ret = syncfs(nfd) < 0 ? -errno : pfs_st_sync(c->st, c->pfd, false);
	if (ret < 0) {
		pfs_cfail(c, ret, "cannot sync %s", c->newroot);
		goto undo;
	}
	pfs_commit_crashpoint("atomic-built");
	ret = pfs_st_rename(c->st, c->pfd, n.newdir, c->pfd, c->base, RENAME_EXCHANGE);
	if (ret < 0) {
		pfs_cfail(c, ret, "cannot swap %s and %s", c->newroot, c->lower);
		goto undo;
	}
	c->committed = true;
	ret = pfs_st_sync(c->st, c->pfd, false);
	if (ret < 0) {
		pfs_cfail(c, ret, "swapped the new tree in, but cannot sync the parent of "
				"%s; prismfs recover --lower %s finishes", c->lower, c->lower);
		goto out;
	}
	pfs_commit_crashpoint("atomic-swapped");
	ret = finish(c, &n, &j);
	if (ret < 0) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", c->err);
		snprintf(c->err, c->errlen, "the new tree is in place, but cleaning up failed: %s; "
			 "prismfs recover --lower %s finishes", msg, c->lower);
	}
	goto out;
undo:
	/* Best effort (the first error is the one reported): whatever is left,
	 * the journal lets the next recovery finish it. */
	roll_back(c, &n, &j);
out:
	if (nfd >= 0)
		close(nfd);
	return ret;
}
