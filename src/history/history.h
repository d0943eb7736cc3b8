/* history: every change made through a mount, journaled; snapshots, and
 * the previous version of what a change after a snapshot touches (issue
 * 17; docs/HISTORY.md). A store (store/store.h) wrapping the one the view
 * uses, as the memory cache is: the view never knows.
 *
 * DIR holds
 *   history.db   SQLite (WAL): the journal (table changes), the snapshots,
 *                and the index of saved versions;
 *   versions/    the saved previous versions, one file each (a reflink
 *                where the filesystem has one, a copy otherwise).
 *
 * A change is recorded (committed to the WAL) before it is made, with
 * state 0 ("not known to have happened"); once made, its row says 1, or
 * the -errno it failed with — written in the next commit's transaction
 * (no commit of its own), or when the journal is about to be read. Rows of
 * changes made in parallel are committed together (group commit), each
 * still before its change. The next
 * mount marks the rows a dead daemon left at 0 with 2, "interrupted":
 * still not known to have happened. A kill -9 between the two leaves state 0: the
 * change may or may not be in the tree. If the record cannot be written,
 * the change is not made and fails with the error: nothing is dropped.
 *
 * Data written through kernel passthrough never reaches the daemon: the
 * journal has the open for writing (before any byte can change), then a
 * "write" row at fsync and at release when size or mtime moved (the
 * release's, a note after the fact, rides in the next commit). Without
 * passthrough the writes do reach the view, but it writes with pwrite(2),
 * not through the store, so the same rows are what there is: no ranges.
 *
 * Lock order: the queue of rows to commit (qmu) is never held with the
 * history's mutex, which is held across a commit (SQLite's connection is
 * one; the journal is one sequence anyway); the checkpoint thread's and
 * the command-name cache's mutexes are leaves. */
#ifndef PFS_HISTORY_H
#define PFS_HISTORY_H

#include "store/past.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>

/* A history store over the tree whose root is rootpath (canonical), kept
 * in dir (made if missing; not inside the tree), wrapping inner (owned
 * once made). rootfd: an O_PATH descriptor of inner's root when rootpath
 * does not reach it (the memory cache's: rootpath names its mirror), else
 * -1; it is duplicated. 0 or -errno with one line in err, nothing changed. */
int pfs_history_new(struct pfs_store **out, struct pfs_store *inner, const char *rootpath,
		    int rootfd, const char *dir, char *err, size_t errlen);
/* Open the journal in the process that serves (SQLite's connection does
 * not cross a fork). 0 or -errno. */
int pfs_history_start(struct pfs_store *st);
bool pfs_history_is(const struct pfs_store *st);
/* Its directory (canonical). */
const char *pfs_history_dir(const struct pfs_store *st);
/* Write the outcomes of the changes made so far and the notes held (each
 * is written with the next commit otherwise): before the journal is read. */
void pfs_history_flush(struct pfs_store *st);
/* Take a snapshot: a row naming the journal's last change. name NULL: the
 * time. Its id, or -errno with one line in err (-EEXIST: name taken). */
long long pfs_history_snapshot(struct pfs_store *st, const char *name, bool pin, char *err,
			       size_t errlen);
/* The same, automatic (named auto-TIME, kind "auto"). */
long long pfs_history_snapshot_kind(struct pfs_store *st, const char *name, bool pin,
				    bool automatic, char *err, size_t errlen);

/* The tree as it was at each snapshot (history_browse.c), for the view's
 * .history directory; valid while st is. */
const struct pfs_past *pfs_history_past(struct pfs_store *st);

/* Retention and automatic checkpoints (history_keep.c). */
enum { PFS_KEEP_LAST, PFS_KEEP_HOURLY, PFS_KEEP_DAILY, PFS_KEEP_WEEKLY, PFS_KEEP_MONTHLY,
       PFS_KEEP_MANUAL, PFS_KEEP_N };
struct pfs_hist_policy {
	long long every_ns;            /* --checkpoint-every, 0: none */
	bool has_keep;                 /* --keep given: it thins automatic snapshots */
	int keep[PFS_KEEP_N];          /* -1: not said */
	unsigned long long max_bytes;  /* --history-max, 0: none */
};
/* "30s", "15m", "1h", "1d" (a bare number: seconds). 0 or -EINVAL. */
int pfs_hist_parse_duration(const char *s, long long *ns);
/* "hourly=24,daily=30,weekly=8,monthly=N,last=N,manual=N" into pol. 0 or
 * -EINVAL with one line in err. */
int pfs_hist_parse_keep(const char *s, struct pfs_hist_policy *pol, char *err, size_t errlen);
/* "512K", "10M", "2G" (bytes without a suffix). 0 or -EINVAL. */
int pfs_hist_parse_size(const char *s, unsigned long long *bytes);
void pfs_hist_policy_init(struct pfs_hist_policy *pol);
/* The mount's policy; before pfs_history_start. */
void pfs_history_set_policy(struct pfs_store *st, const struct pfs_hist_policy *pol);
/* A layered mount's history (root: the upper): an object outside the root
 * is a copy-up's temporary in the work directory, whose changes are not
 * journaled (only the rename that brings it in). Elsewhere an object
 * outside the root (a mapping table's target outside SOURCE) is journaled
 * by its absolute path. */
void pfs_history_temps_outside(struct pfs_store *st);
/* How many times the checkpoint thread has looked for changes (status). */
unsigned long long pfs_history_checks(const struct pfs_store *st);
/* Prune now by pol (NULL: the mount's): the snapshots the policy lets go,
 * and the saved versions no kept snapshot needs. dry: say what would go,
 * change nothing. *json: the report (malloc'ed). 0 or -errno. */
int pfs_history_prune(struct pfs_store *st, const struct pfs_hist_policy *pol, bool dry,
		      char **json);

#endif
