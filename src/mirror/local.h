/* local: a local directory as the mirror of a memory cache (mirror/mirror.h,
 * kind "local", every cap but COND) — read with the store's calls, and
 * how the write-back queue's ops (mirror/wbop.h) are applied to it.
 *
 * Every op is idempotent, so a journal replayed after a crash may apply an
 * op a second time: a mkdir that finds its directory, an unlink that finds
 * nothing, a rename whose source is gone and whose target is there, all
 * count as done. Paths are resolved beneath the mirror's root and never
 * through a symlink (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): a
 * symlink planted in the mirror cannot send a write-back elsewhere.
 *
 * A file's data is written to a temporary file beside it and renamed over
 * it, so the mirror never holds half a file; a file with several names
 * (hard links) is rewritten in place instead, so its other names keep
 * seeing it. Before replacing a file, the mirror's copy is compared with
 * what the cache loaded (its base: inode, size, mtime): if it changed
 * behind the mount, the cache's version is written beside it as
 * NAME.prismfs-conflict-YYYYMMDDTHHMMSSZ and the mirror's change is kept.
 * Later write-backs of that file go to the same conflict name, and so do
 * later ops by path on it (attrs, xattrs, link, rename, unlink: the cache
 * gives them the file's key): they act on the view's copy, never on the
 * other party's file. A file changed behind the mount that the view never
 * saw is neither removed nor given the view's attrs (kept, counted as a
 * conflict); a rename moves it, said as a conflict. A target already
 * holding exactly the cache's bytes is no conflict (a replayed write).
 * Its bases go into the journal (base_save: "b DEV INO SIZE MTIME" or
 * "c CONFLICT-NAME"), so a replay applies the same rule.
 *
 * Durability: flush makes everything applied so far
 * durable (syncfs on the mirror's filesystem); the queue calls it before
 * an fsync or sync returns.
 *
 * Lock order: m->lock (the base table) only; never held across a call of
 * the store.
 *
 * It alone gives the optional ops (open, tmpfile, ino): a file too large
 * for the cache is read from or spilled to the mirror's filesystem, and
 * a replayed journal tells an exchange done by the inodes. */
#ifndef PFS_MIRROR_LOCAL_H
#define PFS_MIRROR_LOCAL_H

#include "mirror/mirror.h"

/* Open the mirror directory path through store st. 0, or -errno and a
 * one-line message in err. */
int pfs_mirror_local_open(struct pfs_mirror **out, struct pfs_store *st, const char *path,
			  char *err, size_t errlen);

#endif
