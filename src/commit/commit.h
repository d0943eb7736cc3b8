/* commit: finalize a copy-on-write layer offline — apply an upper directory
 * (kernel overlayfs format, see ovlfmt.h) to the lower directory below it,
 * in place or atomically, finish or roll back an interrupted atomic commit,
 * or discard the upper. The daemon calls the same functions at unmount.
 *
 * Every function returns 0 or a negative errno and, on failure, writes one
 * line (no "prismfs:" prefix, no newline) to err. */
#ifndef PFS_COMMIT_H
#define PFS_COMMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "layers/layer_opts.h"
#include "ctl/progress.h"

struct pfs_store;

struct pfs_commit_opts {
	const char *upper;
	const char *lower;  /* the top lower: the directory the changes apply to */
	/* The lowers below it, highest first, as the overlay stacked them: what
	 * the upper hid from them stays hidden in lower (commit_hide.c). */
	const char *const *below;
	size_t nbelow;
	enum pfs_whiteout whiteout; /* how a whiteout kept in lower is made */
	const char *work;   /* NULL, or the overlay work directory: emptied with the upper */
	bool atomic;        /* build the new tree beside lower and swap it in */
	bool progress;      /* draw a progress line on stderr (pass isatty(2)) */
	pfs_progress_sink sink; /* NULL, or where the same counts go at the same pace */
	struct pfs_store *store; /* how the directories are reached (store/store.h) */
	void *sink_arg;
};

/* Apply upper to lower so that lower becomes what the overlay showed.
 *
 * In place: whiteouts delete, opaque directories replace the lower
 * directory's contents, a renamed directory (overlay.redirect) is its lower
 * directory moved to the new name, directories merge, each changed file is written to a
 * temporary file and renamed over the old one, identical files are kept.
 * A failure stops at once; lower may then be partly updated (each file is
 * whole, old or new), the upper is whole, and running the same commit again
 * completes it. A journal `.NAME.prismfs-inplace` beside lower and a mark
 * on the upper (commit_resume.c) let pfs_commit_recover complete a commit
 * cut short at any point, and keep an upper that emptying has begun on from
 * ever being applied again.
 *
 * Atomic: the new tree is built in `.NAME.prismfs-new` beside lower (NAME
 * = lower's name), sharing unchanged files with lower (reflink, or else hard
 * link), made durable, then swapped with lower in one rename. A journal
 * `.NAME.prismfs-commit` beside lower lets pfs_commit_recover finish or undo
 * it after a crash at any point; lower is always wholly old or wholly new.
 *
 * Either way an interrupted atomic commit of lower is recovered first, and
 * the upper (and work) are emptied only after everything is durable; on
 * failure the upper is left intact. */
int pfs_commit(const struct pfs_commit_opts *o, char *err, size_t errlen);

/* Remove everything inside upper (and inside work, unless NULL); the
 * directories themselves stay. Never follows a symlink, never crosses into
 * another mount, any depth. */
int pfs_discard(struct pfs_store *st, const char *upper, const char *work, char *err, size_t errlen);

enum pfs_recovery {
	PFS_RECOVERY_NONE,        /* no interrupted commit */
	PFS_RECOVERY_ROLLED_BACK, /* the old tree stays; the upper is kept */
	PFS_RECOVERY_FINISHED,    /* the new tree stays; the old tree and upper are gone */
	PFS_RECOVERY_COMPLETED,   /* in place: the rest applied, the upper emptied */
};

/* Finish or roll back an interrupted atomic commit of lower, or complete an
 * interrupted in-place one. */
int pfs_commit_recover(struct pfs_store *store, const char *lower, enum pfs_recovery *done,
		       char *err, size_t errlen);

/* Does upper hold an in-place commit cut short (its mark)? 1 and the lower
 * it goes into in lower (NUL-terminated), 0, or -errno. */
int pfs_commit_upper_pending(struct pfs_store *st, const char *upper, char *lower, size_t len);

#endif
