/* journal: the local journal of a memory cache (mount --journal DIR) —
 * what makes a kill -9 of the daemon lose nothing acknowledged.
 *
 * DIR holds
 *   journal.db  SQLite (WAL, synchronous=NORMAL): every write-back op
 *               (cache/wbq.h) recorded before pfs_wbq_push returns, so
 *               before the reply; and every file open for writing (its
 *               data may change through kernel passthrough, which the
 *               daemon never sees);
 *   applied     the newest op applied to the mirror (8 bytes written over
 *               after each apply: cheaper than deleting a row; the rows up
 *               to it are deleted in batches);
 *   tree/       where the cache's memory filesystem (a tmpfs) is mounted
 *               instead of being detached: it outlives the daemon, so the
 *               data of the ops still pending is there after a crash;
 *   lock        flock'ed by the daemon that uses DIR;
 *   spill/      the data of files too large for memory, one file per tree
 *               file (cache/journal_spill.c), on DIR's own disk.
 *
 * The next mount with the same DIR replays what is pending onto the
 * mirror, in order, before serving: a DATA op takes its data from the file
 * of the old tree that has the recorded inode (and birth time) — a file no
 * longer there has no name in the final state, so nothing it held can
 * reach the mirror's end state — and a file that was open for writing is
 * written back under its names in the old tree. A mirror's apply is
 * idempotent (mirror/local.c), and only the op after the one DIR/applied
 * names can have been applied without being counted; the one op that is
 * not idempotent, RENAME_EXCHANGE, is marked with the mirror's inodes
 * before it is applied (where the mirror has them, its ino; one without
 * is not marked, and a replay applies it again). A CREATE is marked with
 * the file the mirror made for it before that file is named (wbop.h:
 * made_ino), so that a replay tells its own file from one made behind the
 * mount meanwhile (a conflict, kept beside).
 *
 * The tree and the journal in order: the tree outlives the daemon, so a
 * change made in it and not recorded would be in the tree and never on
 * the mirror (and the data of a file open for writing, written back under
 * its names in the tree, would follow a name the mirror lacks). A change
 * (create, mkdir, symlink, mknod, link, rename, unlink, rmdir, chmod,
 * chown, utimes, setxattr, removexattr) is therefore recorded before the
 * tree makes it, held in the queue until the
 * tree answers (cache/wbq.h: pfs_wbq_push_held); one the tree refuses has
 * its row deleted before it is released (pfs_journal_cancel: an
 * extra write, on failure only). No write marks the success: each row
 * lists the ops held when it was written (column held, NULL when none),
 * and an op one later row does not list was released — made — before
 * that row. An op every later row lists (the last ones) may have been
 * caught by the kill before or after its change; the replay settles it by
 * the surviving tree: a new object of its type at its path (MKDIR,
 * SYMLINK, MKNOD, CREATE), its object (column tino, the tree's inode) at path2
 * (RENAME, LINK) or no longer at path (UNLINK, RMDIR) — made, applied;
 * else dropped; a change of attributes or an xattr takes what the tree
 * has. Nothing later changed that object (the kernel keeps the names and
 * the inode an op works on locked until its reply, which follows the
 * release), so the tree tells. A record has what the tree will do (the
 * mode and owner of a new object, chown's clearing of set-ID bits),
 * written again at release in the rare case the tree did otherwise
 * (UTIME_NOW); a CREATE of open(2) learns its key (the inode) at release,
 * and the queue's next record carries it ("SEQ=KEY" in held). Data needs
 * none of this: a file written or truncated is open for writing, recorded
 * at the open, and written back as the tree has it.
 *
 * Why a tmpfs mounted in DIR rather than DIR/tree on DIR's disk:
 * the cache keeps memory speed and --cache-size keeps its meaning, and a
 * disk would add nothing the journal promises (its pages are not synced
 * either, so it too would not survive power loss).
 *
 * What it guarantees: a crash of the daemon (kill -9, OOM, a bug) loses no
 * acknowledged change. Not a crash of the machine: neither journal.db's
 * commits (synchronous=NORMAL) nor the tmpfs survive power loss; fsync and
 * prismfs sync are what make data durable on the mirror.
 *
 * Lock order: j->lock is a leaf (taken under the queue's lock by record and
 * cancel). */
#ifndef PFS_JOURNAL_H
#define PFS_JOURNAL_H

#include "mirror/mirror.h"
#include "cache/wbq.h"
#include "store/store.h"

#include <stdint.h>

struct pfs_journal;

/* Take DIR (made if missing) as the journal of the mirror mirror (a
 * canonical path): lock it, open its database, and check it is this
 * mirror's. 0, or -errno with one line in err, nothing changed. */
int pfs_journal_open(struct pfs_journal **out, const char *dir, const char *mirror, char *err,
		     size_t errlen);

/* Apply what a crashed daemon left pending to the mirror (opened through
 * st), then unmount the old tree. 0, or -errno with one line in err (what
 * is left stays in the journal). */
int pfs_journal_replay(struct pfs_journal *j, struct pfs_store *st, const char *mirror,
		       const struct pfs_mirror_opts *mo, char *err, size_t errlen);

/* Conflicts the replay met (a file changed on the mirror behind the
 * mount, kept beside), and the last one's report: prismfs status counts
 * them with the mount's own. */
unsigned long pfs_journal_replay_conflicts(struct pfs_journal *j, char *buf, size_t len);

/* A new memory filesystem of size bytes, to be mounted at DIR/tree: its
 * root (O_RDONLY | O_DIRECTORY), or -errno with one line in err. */
int pfs_journal_memfs(struct pfs_journal *j, uint64_t size, char *err, size_t errlen);
/* Mount it there: in the process that serves (a daemon's parent, which
 * only sets up, must not leave it behind nor take it away). 0 or -errno. */
int pfs_journal_attach(struct pfs_journal *j);

/* The mirror the queue's ops go to (pfs_journal_apply). */
void pfs_journal_use(struct pfs_journal *j, struct pfs_mirror *m);

/* The queue's callbacks (cache/wbq.h), arg = the journal: record, cancel
 * (deletes the record of a held op the tree refused), apply (the mirror's
 * apply), done (counts the op applied), flush (the mirror's). */
int pfs_journal_record(void *j, const struct pfs_wb_op *op);
void pfs_journal_cancel(void *j, const struct pfs_wb_op *op);
int pfs_journal_apply(void *j, struct pfs_wb_op *op, char *err, size_t errlen);
/* The mirror's apply_new (a new file in one apply; no op of such a run is
 * an exchange to mark). Only set where the mirror has one. */
int pfs_journal_apply_new(void *j, struct pfs_wb_op *const *ops, unsigned n, char *err,
			  size_t errlen);
void pfs_journal_done(void *j, const struct pfs_wb_op *op);
int pfs_journal_flush(void *j, char *err, size_t errlen);

/* The cache file fd was opened for writing / fd is released. */
void pfs_journal_opened(struct pfs_journal *j, int fd);
void pfs_journal_closed(struct pfs_journal *j, int fd);

/* Files too large for memory (cache/journal_spill.c): with a journal
 * their data goes to DIR/spill, which outlives the daemon, rather than to
 * an unnamed file. spill_new: a new unnamed file there (read-write), or
 * -errno. spill_keep: name sfd, filled with all of the tree file cfd's
 * data, as that file's spill file, before cfd's memory goes (0 or -errno);
 * from then on the replay reads the file's data from it. spill_done: op
 * was applied and counted: the spill file of a released file (op->flags
 * PFS_WB_DATA_SPILLED) goes. */
int pfs_journal_spill_new(struct pfs_journal *j);
int pfs_journal_spill_keep(struct pfs_journal *j, int cfd, int sfd);
void pfs_journal_spill_done(struct pfs_journal *j, const struct pfs_wb_op *op);
/* The spill file sfd of the tree file cfd is needed no more (its last
 * writer is gone and nothing is to be written back: no name has it). */
void pfs_journal_spill_drop(struct pfs_journal *j, int cfd, int sfd);

/* Release DIR; its tree is unmounted when nothing is pending any more. */
void pfs_journal_close(struct pfs_journal *j);

#endif
