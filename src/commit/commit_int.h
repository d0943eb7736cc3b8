/* commit_int: what the parts of commit share — the state of one run and
 * the functions each part offers the ones above it.
 *
 * Calls go one way, down this graph (a callback passed down is not a call
 * up: pfs_inplace_redo hands recovery commit.c's way of applying again):
 *
 *   commit.c            entry points: check, lock, recover, scan, apply,
 *    |                  discard, recover
 *    |-> commit_scan.c      the first pass: totals and refusals
 *    |-> commit_inplace.c   apply in place --> commit_resume.c
 *    |-> commit_resume.c    the in-place journal and mark; its recovery
 *    |-> commit_swap.c      the atomic sequence --> commit_atomic.c
 *    |                      (build the new tree)
 *    v
 *   helpers, used by all of the above:
 *     commit_walk.c     the paired walk of the upper over the lower
 *     commit_new.c      making entries of the new state
 *     commit_hide.c     what stays hidden from the lowers below
 *     commit_util.c     error lines, crash points, redirects, emptying
 *     commit_redir.c    in place: moving renamed lower directories
 *                       the upper and work
 *   (helpers call commit_util.c and nothing else of commit/; commit_util.c
 *   calls only store/, layers/ovlfmt.h and util/). */
#ifndef PFS_COMMIT_INT_H
#define PFS_COMMIT_INT_H

#include "commit/commit.h"
#include "commit/inomap.h"
#include "layers/ovlfmt.h"
#include "store/meta.h"
#include "ctl/progress.h"
#include "store/walk.h"

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

/* In place: a lower directory an upper directory was renamed from
 * (overlay.redirect), and where it goes; or (file) the lower file a renamed
 * metadata-only copy has its data in, kept in the stage by a hard link
 * until the walk has written the new file. */
struct pfs_cmove {
	char *from; /* its path from the lower root */
	char *to;   /* the upper entry's path: its place in the new lower */
	bool file;
};

/* The in-place commit's moves, in the order the scan met their upper
 * directories (the index names the move's place in the stage). */
struct pfs_credir {
	struct pfs_cmove *v;
	size_t n, cap;
	bool resumed;  /* read back from the journal: some may have moved */
	bool detached; /* the journal says every one left its place */
};

struct pfs_cctx {
	const struct pfs_commit_opts *o;
	struct pfs_store *st;       /* o->store */
	char *err;
	size_t errlen;
	char *upper, *lower, *work; /* canonical paths (work may be NULL) */
	int pfd;                    /* lower's parent directory, locked */
	const char *base;           /* lower's name in it */
	int uroot, lroot;
	dev_t udev;
	struct pfs_progress prog;
	struct pfs_inomap ulinks;   /* upper (dev, ino) with several names -> first copy */
	struct pfs_inomap llinks;   /* lower (dev, ino) -> first clone made of it */
	struct pfs_pathbuf path;    /* the entry being handled, relative to the roots */
	unsigned long tmpseq;
	char *newroot;              /* atomic: where the new tree is built */
	bool no_reflink;            /* atomic: FICLONE failed once, share by hard link */
	bool committed;             /* the lower holds the new state for good */
	struct pfs_chide *hide;     /* the lowers below lower, or NULL: none */
	bool marked;                /* in place: the upper carries the commit's mark */
	struct pfs_credir redir;    /* in place: the renamed lower directories */
	bool moving;                /* in place: one may have left its place, so the
				     * upper alone no longer describes the view */
};

/* --- commit_util.c --- */

/* Write "MESSAGE: strerror(-err)" to c->err; returns err. */
int pfs_cfail(struct pfs_cctx *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A refusal that is not a system call's failure: MESSAGE alone. */
int pfs_crefuse(struct pfs_cctx *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* "OP ROOT/PATH[/name]: strerror(-err)", PATH being c->path. */
int pfs_cfail_at(struct pfs_cctx *c, int err, const char *op, const char *root,
		 const char *name);

/* Tests make the process die for real at a named step:
 * PRISMFS_TEST_CRASH=<step> raises SIGKILL there, PRISMFS_TEST_CRASH=<step>:N
 * the Nth time the step is reached. */
void pfs_commit_crashpoint(const char *step);

/* Where overlayfs finds the lower object of an upper entry that carries the
 * redirect xattr `redir`: an absolute path from the lower root, or a name in
 * the parent's lower directory parent_lfd. On success *dfd (to close) is the
 * directory holding it and *leaf its name there. -ENOENT when it cannot be
 * reached (missing, not a directory on the way, a symlink, a mount), -EINVAL
 * when redir is not a path overlayfs writes. */
int pfs_commit_redirect(struct pfs_cctx *c, int parent_lfd, const char *redir, int *dfd,
			const char **leaf);

/* Empty dir (and work) — the checks are the caller's. */
int pfs_discard_paths(struct pfs_store *st, const char *upper, const char *work, char *err,
		      size_t errlen);
/* The same, passing the crash point `step` (or NULL) after each removal. */
int pfs_empty_layers(struct pfs_store *st, const char *upper, const char *work,
		     const char *step, char *err,
		     size_t errlen);

/* --- the paired walk of the upper over the lower (commit_walk.c) --- */

/* One directory of a walk. */
struct pfs_cwlevel {
	struct pfs_ovl_dir up; /* the upper's entries (none: no upper directory) */
	struct pfs_names lo;   /* the lower names walked beside them (none: not asked) */
	size_t ui, li;         /* the next of each */
	size_t plen;           /* c->path's length in the parent */
	/* The strategies' own. */
	bool reach;      /* its view merged the lowers below the top one */
	bool replace;    /* in place: the lower directory's own children do not survive */
	bool from_upper; /* atomic: whose metadata the new directory gets */
	struct stat st;  /* the directory whose metadata is applied on the way out */
};

#define PFS_CWALK_MAXST 3

struct pfs_cwalk {
	struct pfs_cctx *c;
	const char *root; /* named when walking back up fails */
	/* The directories from the roots down: upper, lower[, new tree]. */
	struct pfs_dstack st[PFS_CWALK_MAXST];
	size_t nst;
	struct pfs_cwlevel *lv;
	size_t n, cap;
	void *arg; /* the strategy's */
};

#define PFS_CW_UPPER 0
#define PFS_CW_LOWER 1
#define PFS_CW_NEW 2

struct pfs_cwalk_ops {
	/* An entry of the top directory, named by c->path: ue from the upper
	 * (the lower one of the same name hidden or merged), or le, a lower
	 * name alone. A directory is entered by pfs_cwalk_push. */
	int (*entry)(struct pfs_cwalk *w, const struct pfs_ovl_ent *ue, const struct pfs_name *le);
	/* The top directory is done (the root too); NULL: nothing to do. */
	int (*leave)(struct pfs_cwalk *w);
};

/* Ready w for nst stacks; root names where a failure to walk back up is. */
int pfs_cwalk_init(struct pfs_cwalk *w, struct pfs_cctx *c, size_t nst, const char *root,
		   void *arg);
/* Enter a directory: fds[i] (owned from now on, even on failure;
 * PFS_DSTACK_ABSENT for none) on stack i, child[i] as pfs_dstack_push;
 * l's contents are owned on success only. 0 or -errno (a message only
 * when out of memory). */
int pfs_cwalk_push(struct pfs_cwalk *w, const int *fds, const bool *child,
		   const struct pfs_cwlevel *l);
/* Walk from the levels pushed (the root) to the end, or the first error. */
int pfs_cwalk_run(struct pfs_cwalk *w, const struct pfs_cwalk_ops *ops);
/* Free what is left (after an error: the levels still open). */
void pfs_cwalk_free(struct pfs_cwalk *w);

static inline int pfs_cwalk_fd(const struct pfs_cwalk *w, size_t i)
{
	return pfs_dstack_top(&w->st[i]);
}

static inline struct pfs_cwlevel *pfs_cwalk_top(struct pfs_cwalk *w)
{
	return &w->lv[w->n - 1];
}

/* --- the first pass (commit_scan.c) --- */

/* First pass over the upper: count what is to do (progress totals) and
 * refuse, before anything changes, what cannot be applied: renamed lower
 * directories and metadata-only copies whose data is not in lower (in
 * place: renamed metadata-only copies, and moves that cannot be made).
 * In place it also records the moves of renamed directories (c->redir),
 * or, resuming, finds them where the journal's moves left them. */
int pfs_commit_scan(struct pfs_cctx *c);

/* --- what stays hidden from the lowers below (commit_hide.c) --- */

/* Open c->o->below (nothing to do when there is none). */
int pfs_chide_open(struct pfs_cctx *c);
/* Before anything changes: can whiteouts be made in c->o->whiteout's form
 * (auto: a device where mknod works beside the lower, else `.wh.NAME`)? */
int pfs_chide_probe(struct pfs_cctx *c);
void pfs_chide_close(struct pfs_cctx *c);

/* Does the top lower's entry name in its directory lfd (-1: none) stop the
 * merge of the layers below there (a whiteout, a non-directory, an opaque
 * or `.wh.`-replaced directory)? */
bool pfs_chide_cuts(struct pfs_cctx *c, int lfd, const char *name);

enum pfs_chide_need { PFS_CHIDE_NOTHING, PFS_CHIDE_WHITEOUT, PFS_CHIDE_OPAQUE };

/* The one decision: what the top lower must hold at c->path so that the
 * lowers below show there what the view showed. reach: the view of the
 * parent directory merged the lowers below; gone: the view showed nothing
 * at the path (the upper whited it out); cut: it showed a directory that
 * merged nothing from below. */
int pfs_chide_decide(struct pfs_cctx *c, bool reach, bool gone, bool cut,
		     enum pfs_chide_need *need);
/* Make the whiteout for name in dirfd (a directory of the new lower). */
int pfs_chide_whiteout(struct pfs_cctx *c, int dirfd, const char *name, const char *root);
/* Make the directory dirfd opaque (overlay.opaque=y, or the marker). */
int pfs_chide_opaque(struct pfs_cctx *c, int dirfd, const char *root);

/* --- making entries (commit_new.c) --- */

/* Where a new entry comes from. */
struct pfs_csrc {
	const struct stat *st;   /* its lstat: type, owner, mode, times */
	struct pfs_ref meta;     /* whose xattrs it gets */
	unsigned meta_flags;     /* PFS_META_* */
	int datafd;              /* regular files: where the bytes are read */
	bool clone;              /* regular files: try FICLONE from datafd first */
	bool must_clone;         /* ...and never copy: return the clone's error as is */
	bool tick;               /* count the bytes copied in the progress line */
	const char *upath;       /* the upper directory's entry, for symlink targets */
	int udirfd;
};

/* Make name in dirfd a new copy of src, replacing whatever is there (a
 * directory there is removed first). Regular files are written unnamed
 * (O_TMPFILE) or under a temporary name, made durable, then linked into
 * place, so name is always the whole old or the whole new file. *ino gets
 * the new inode number; *cloned whether the data was shared. */
int pfs_cnew(struct pfs_cctx *c, int dirfd, const char *name, const struct pfs_csrc *src,
	     bool exists, ino_t *ino, bool *cloned, const char *root);

/* Make name in dirfd another link to the file at `from` (relative to
 * fromroot), replacing whatever is there. */
int pfs_clink(struct pfs_cctx *c, int fromroot, const char *from, int dirfd, const char *name,
	      bool exists, const char *root);

/* Rename tmp over name in dirfd; a directory at name is removed first. */
int pfs_cinstall(struct pfs_cctx *c, int dirfd, const char *tmp, const char *name,
		 const char *root);

/* --- in place: moving renamed lower directories (commit_redir.c) --- */

/* Record the move of the lower directory at from to c->path (file: keep
 * the lower file at from, the data of the metadata-only copy c->path). */
int pfs_credir_add(struct pfs_cctx *c, const char *from, bool file);
/* The move of the upper directory c->path, or -1. */
ssize_t pfs_credir_find(const struct pfs_cctx *c);
/* A resumed commit: open where move i's directory is now (the stage, its
 * place, or still where it came from). */
int pfs_credir_open(struct pfs_cctx *c, size_t i, int *lfd);
/* Open the data kept for the file move i (read-only); -ENOENT: none kept
 * (the walk of a commit cut short wrote the file already). */
int pfs_credir_data(struct pfs_cctx *c, size_t i, int *fd);
/* After the walk: drop the kept data and the stage. */
int pfs_credir_end(struct pfs_cctx *c);
/* After the scan, before anything changes: refuse what moving cannot give
 * (one lower directory shown at two places). */
int pfs_credir_check(struct pfs_cctx *c);
/* Move every directory out of its place into the stage (and link every
 * kept file there), then (journaled) each directory from the stage into
 * its new place; each step is done once, however often it is run again. */
int pfs_credir_detach(struct pfs_cctx *c);
int pfs_credir_attach(struct pfs_cctx *c);
void pfs_credir_free(struct pfs_credir *r);

/* --- the two ways of applying --- */
int pfs_commit_inplace(struct pfs_cctx *c);
/* Build the new tree (upper over lower) into the empty directory newfd. */
int pfs_commit_build(struct pfs_cctx *c, int newfd);
/* Build beside lower, swap in, clean up — journaled (commit_swap.c). */
int pfs_commit_atomic(struct pfs_cctx *c);

/* With c->pfd locked: finish or roll back an interrupted atomic commit. */
int pfs_commit_recover_locked(struct pfs_cctx *c, enum pfs_recovery *done,
			      char **recovered_upper);

/* --- the in-place commit's crash protocol (commit_resume.c) --- */

/* Before anything is applied: journal "applying", mark the upper. */
int pfs_inplace_begin(struct pfs_cctx *c);
/* Every renamed lower directory has left its place: journal it. */
int pfs_inplace_detached(struct pfs_cctx *c);
/* Everything applied and durable: journal "applied" (the upper may go). */
int pfs_inplace_applied(struct pfs_cctx *c);
/* Empty the upper and work, unmark, drop the journal. */
int pfs_inplace_end(struct pfs_cctx *c);
/* A failure before "applied": unmark and drop the journal, best effort
 * (the upper is whole; the commit run again completes it). */
void pfs_inplace_abandon(struct pfs_cctx *c);

/* Apply o (upper, work and the lowers below, as the journal recorded the
 * commit) to c->lower again, all steps, under c's lock. */
typedef int (*pfs_inplace_redo)(struct pfs_cctx *c, const struct pfs_commit_opts *o);
/* With c->pfd locked: finish an interrupted in-place commit of c->lower.
 * *done: NONE (nothing to do), ROLLED_BACK (nothing had been applied, the
 * upper is kept) or COMPLETED; *recovered_upper (to free, or NULL) the
 * upper that was completed. */
int pfs_inplace_recover_locked(struct pfs_cctx *c, enum pfs_recovery *done,
			       char **recovered_upper, pfs_inplace_redo redo);

#endif
