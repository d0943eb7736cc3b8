/* history_settle: after a kill -9, the rows a dead daemon left
 * unfinished (state 0) are settled by the tree before the mount serves
 * (see docs/HISTORY.md, "The journal"). */
#include "history/history_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether the change of a row a dead daemon left unfinished was made,
 * as far as the tree shows: a change of an object's data or metadata
 * counts as made (its version was saved before it: what the object was
 * stays known either way, and a diff may list it as changed); a name
 * made, if it is there; a name removed, if it is not; a rename, if the
 * old name is gone and the new one there. An exchange cannot be told
 * (both names are there either way): left interrupted. */
static bool row_made(struct pfs_history *h, int root, const char *kind, const char *p,
		     const char *p2, long long arg)
{
	struct stat st;
	/* through the store: a cache fills what it has not listed yet */
	bool at1 = p && pfs_st_stat(h->in, root, p, &st, AT_SYMLINK_NOFOLLOW) == 0;
	bool at2 = p2 && pfs_st_stat(h->in, root, p2, &st, AT_SYMLINK_NOFOLLOW) == 0;

	if (!strcmp(kind, "create") || !strcmp(kind, "mkdir") || !strcmp(kind, "mknod") ||
	    !strcmp(kind, "symlink"))
		return at1;
	if (!strcmp(kind, "link"))
		return at2;
	if (!strcmp(kind, "unlink") || !strcmp(kind, "rmdir"))
		return !at1;
	if (!strcmp(kind, "rename"))
		return !(arg & 2) && !at1 && at2;
	return true;
}

int pfs_hist_settle(struct pfs_history *h)
{
	sqlite3_stmt *q = NULL, *u = NULL;
	int root = pfs_hist_root(h), ret = -EIO;

	if (root < 0)
		return root;
	if (sqlite3_prepare_v2(h->db, "SELECT seq, kind, path, path2, arg FROM changes"
				      " WHERE state = 0", -1, &q, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(h->db, "UPDATE changes SET state = 1 WHERE seq = ?", -1, &u,
			       NULL) != SQLITE_OK ||
	    sqlite3_exec(h->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	while (sqlite3_step(q) == SQLITE_ROW) {
		const char *p2 = (const char *)sqlite3_column_text(q, 3);

		if (!row_made(h, root, (const char *)sqlite3_column_text(q, 1),
			      (const char *)sqlite3_column_text(q, 2), p2,
			      sqlite3_column_int64(q, 4)))
			continue;
		sqlite3_bind_int64(u, 1, sqlite3_column_int64(q, 0));
		sqlite3_step(u);
		sqlite3_reset(u);
	}
	ret = sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
	if (ret < 0)
		sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
out:
	sqlite3_finalize(q);
	sqlite3_finalize(u);
	close(root);
	return ret;
}
