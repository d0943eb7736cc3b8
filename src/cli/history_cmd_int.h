/* history_cmd_int: what the history's commands share (history_cmd.c,
 * history_query.c). */
#ifndef PFS_HISTORY_CMD_INT_H
#define PFS_HISTORY_CMD_INT_H

#include "history/history_replay.h"
#include "map/maphist.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

/* Send req to the daemon of mnt; its one-line answer in buf. 0 or -1
 * after saying why. */
int pfs_hc_ask(const char *mnt, const char *req, char *buf, size_t len);
/* The history database of the mount mnt, opened read-only (the daemon
 * first writes the outcomes it holds); NULL after saying why. */
sqlite3 *pfs_hc_open_db(const char *mnt);
void pfs_hc_fmt_ns(long long ns, char *buf, size_t len);
/* A --json answer: arr on stdout, indented, in its order. */
void pfs_hc_put_json(const json_t *arr);
/* Column i as text, "" for NULL. */
const char *pfs_hc_col(sqlite3_stmt *q, int i);
/* PATH as the journal names it: relative to the mount's root (canon_m). */
void pfs_hc_relpath(const char *canon_m, const char *path, char *rel, size_t len);

/* The mapping tables a mount's history recorded (docs/HISTORY.md, "With a
 * mapping table"), oldest first, each from its journal seq on (m[i] NULL:
 * none then); n 0 when it never had one. mnt is borrowed. */
struct pfs_hc_maps {
	size_t n;
	long long *seq;
	struct pfs_map **m;
	char *source;
	const char *mnt;
};
/* 0, or -1 (a table that does not parse, ENOMEM). */
int pfs_hc_maps_load(sqlite3 *db, const char *canon_m, struct pfs_hc_maps *t);
void pfs_hc_maps_free(struct pfs_hc_maps *t);
/* Did the history ever record a table (not "none")? */
bool pfs_hc_mapped(sqlite3 *db);
/* The table in force at journal position seq (NULL: none). */
const struct pfs_map *pfs_hc_map_at(const struct pfs_hc_maps *t, long long seq);

/* versions and diff (history_query.c). */
bool pfs_history_query_is(const char *word);
int pfs_history_query(int argc, char **argv);
/* export (history_export.c): its exit code. */
int pfs_history_export_cmd(int argc, char **argv);
/* restore (history_restore.c): its exit code. */
int pfs_history_restore_cmd(int argc, char **argv);
/* prune (history_prune.c): its exit code. */
int pfs_history_prune_cmd(int argc, char **argv);
/* diff on a layered mount (history_layered_diff.c): after the replay's
 * report, its out table rewritten to speak of the merged trees side_a and
 * side_b (.history/A, .history/B or the mount), past the browse
 * directory's name (no name of the root). 0 or -errno. */
int pfs_hq_layered(sqlite3 *db, const char *side_a, const char *side_b, const char *past);

#endif
