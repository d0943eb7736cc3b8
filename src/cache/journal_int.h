/* journal_int: what journal.c and journal_replay.c share. */
#ifndef PFS_JOURNAL_INT_H
#define PFS_JOURNAL_INT_H

#include "cache/journal.h"
#include "mirror/basetab.h"

#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>

struct pfs_journal {
	char *dir;                 /* canonical */
	char *treepath;            /* dir/tree */
	int dirfd, lockfd;
	/* DIR/applied: the newest seq applied to the mirror, 8 bytes written
	 * over after each apply (cheaper than deleting its row; the rows up
	 * to it are deleted in batches). Seqs go on from one daemon to the
	 * next: a row's seq is base + the queue's seq. */
	int appliedfd;
	int64_t base, applied, gc_at;
	int mnt;                   /* the new tree, until attached (-1) */
	bool serving;              /* this process attached the tree and serves */
	bool crash;                /* tests: crash points on */
	struct pfs_mirror *m;
	pthread_mutex_t lock;      /* the database and byfd */
	sqlite3 *db;
	sqlite3_stmt *ins, *del, *cancel, *mark, *ins_open, *del_open, *open_base;
	int64_t *byfd;             /* fd -> its row in open (0: none) */
	size_t nfd;
	/* Files with an op recorded and not yet applied, by key (struct
	 * pend): the mirror's base of such a file changes when that op is
	 * applied, so a later op's record leaves the base out rather than
	 * keep one a replay would take for a change behind the mount. */
	struct pfs_basetab pending;
	unsigned long replay_conflicts; /* met by the replay at open */
	char replay_conflict[PATH_MAX + 128]; /* the last one's report */
};

int pfs_journal_stmt(struct pfs_journal *j, const char *sql, sqlite3_stmt **out);
/* Is a filesystem mounted on dir/tree? Unmount it (lazily). */
bool pfs_journal_tree_mounted(struct pfs_journal *j);
void pfs_journal_unmount_tree(struct pfs_journal *j);
/* Say that every op up to seq is applied. 0 or -errno. */
int pfs_journal_set_applied(struct pfs_journal *j, int64_t seq);
/* Rows in table (ops: those not applied, open); -1: cannot tell. */
int64_t pfs_journal_pending(struct pfs_journal *j, const char *table);
/* Keep x1, x2 in the row of op seq (an exchange's inodes, what a create
 * made). */
void pfs_journal_mark(struct pfs_journal *j, int64_t seq, int64_t x1, int64_t x2);
/* wbop.h's made_fn for a replayed op (its seq is the row's). */
void pfs_journal_replay_made(void *j, const struct pfs_wb_op *op);
/* A mirror path's inode (0: none, or a mirror that cannot tell). */
int64_t pfs_journal_mirror_ino(struct pfs_mirror *m, const char *path);
/* journal_spill.c: op (of the tree file ino, birth time bs.bns) reads its
 * data from that file's spill file if there is one (op->datafd; the tree
 * file's size set to its size). 1: it does; 0: none; -errno. */
int pfs_journal_spill_use(struct pfs_journal *j, struct pfs_wb_op *op, int64_t ino, int64_t bs,
			  int64_t bns);
/* Remove every spill file (nothing pending needs one any more). */
void pfs_journal_spill_clear(struct pfs_journal *j);

#endif
