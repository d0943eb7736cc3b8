/* history_replay: the journal replayed between two positions into TEMP
 * tables of a read-only connection to DIR/history.db (history_replay.c).
 * Used by prismfs diff and export, and by the daemon's .history tree. */
#ifndef PFS_HISTORY_REPLAY_H
#define PFS_HISTORY_REPLAY_H

#include <sqlite3.h>
#include <stddef.h>

/* A statement kept prepared on db (found again by its text): 0 or -1.
 * pfs_hq_done resets it for the next; a connection that used them is
 * closed by pfs_hq_close (which finalizes them). */
int pfs_hq_prep(sqlite3 *db, const char *sql, sqlite3_stmt **q);
void pfs_hq_done(sqlite3_stmt *q);
void pfs_hq_close(sqlite3 *db);
/* Snapshot name (a name or an id): its journal position and id. 0 or -1. */
int pfs_hq_snap(sqlite3 *db, const char *name, long long *seq, long long *id);
/* Replay the journal's changes made in (sa, sb] (sb < 0: up to now) into
 * TEMP tables cur(path, orig, mod, fpath, fseq), gone(path), del(orig,
 * fpath, fseq), out(t, p, o). 0 or -1 (sqlite3_errmsg says why). */
int pfs_hq_replay(sqlite3 *db, long long sa, long long sb);
/* After a replay: the path at sa of the object now at p ("" made since).
 * 1 if the replay saw it or a parent of it, 0 if not (orig is p). */
int pfs_hq_orig(sqlite3 *db, const char *p, char *orig, size_t len);
/* After a replay: diff's lines into out (t '+', '-', 'M', 'R'). 0 or -1. */
int pfs_hq_report(sqlite3 *db);

#endif
