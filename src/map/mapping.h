/* mapping: the table of virtual paths that the view remaps, grafts or hides.
 * Pure logic (no I/O): parse and validate a JSON table, resolve a virtual
 * path against it, list the names it adds to or hides from a directory, and
 * tell which keys differ between two tables. A table is immutable once built
 * and shared by reference count, so a reader holds one whole generation. */
#ifndef PFS_MAPPING_H
#define PFS_MAPPING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PFS_MAP_ERRLEN 256

struct pfs_map_entry {
	const char *key;    /* absolute virtual path: "/" or "/a/b" (no trailing '/') */
	const char *target; /* as written; NULL: the key and its subtree are hidden */
	bool has_mode, has_uid, has_gid;
	bool readonly;
	mode_t mode;        /* permission bits only (<= 07777) */
	uid_t uid;
	gid_t gid;
};

struct pfs_map;

/* Parse and validate a whole table. On error returns -EINVAL (or -ENOMEM) and
 * writes one line to err: "line L, column C: <jansson's text>" for JSON syntax,
 * "key \"/a/\": trailing slash" (etc.) for a bad key or value. */
int pfs_map_parse(const char *json, size_t len, struct pfs_map **out, char err[PFS_MAP_ERRLEN]);
struct pfs_map *pfs_map_ref(struct pfs_map *m);
void pfs_map_unref(struct pfs_map *m); /* NULL is fine */
size_t pfs_map_count(const struct pfs_map *m); /* NULL: 0 */
/* Every entry, in key order (parents before their subtrees); NULL: none. */
const struct pfs_map_entry *pfs_map_entries(const struct pfs_map *m, size_t *n);

struct pfs_map_res {
	/* The exact entry for path, else the deepest entry above it that has a
	 * target (its subtree is grafted); NULL: the path is not mapped. */
	const struct pfs_map_entry *entry;
	bool exact;          /* entry->key equals path */
	bool hidden;         /* path is at or beneath an entry without target */
	bool readonly;       /* an entry at or above path says readonly */
	bool parent_of_keys; /* some key lies strictly beneath path */
	const char *rest;    /* graft: path below entry->key without leading '/'
			      * ("" when exact); points into path */
};
/* path must be normalised as keys are. m may be NULL (empty table). */
void pfs_map_resolve(const struct pfs_map *m, const char *path, struct pfs_map_res *r);

/* For directory dir, every name the table places directly in it: a key
 * "dir/name" (exact, hidden if it has no target) or a deeper key's first
 * component below dir (exact == NULL: a virtual parent). Stops and returns
 * fn's value when it is non-zero. Names come in strcmp order. */
typedef int (*pfs_map_child_fn)(const char *name, bool hidden, const struct pfs_map_entry *exact,
				void *arg);
int pfs_map_children(const struct pfs_map *m, const char *dir, pfs_map_child_fn fn, void *arg);

/* Calls fn for every key present in only one of a and b or whose entry
 * differs (any field). Either may be NULL. Stops on fn's non-zero value. */
int pfs_map_diff(const struct pfs_map *a, const struct pfs_map *b,
		 int (*fn)(const char *key, void *arg), void *arg);

/* Calls fn for every entry with a target that has `name` as one of its
 * path components (the last included; NULL: every entry with a target), in
 * key order: the keys whose object a change of such a name may replace.
 * Stops on fn's non-zero value and returns it. */
int pfs_map_targets_through(const struct pfs_map *m, const char *name,
			    int (*fn)(const struct pfs_map_entry *e, void *arg), void *arg);

/* Stable 64-bit hash of a string (FNV-1a), never 0. */
uint64_t pfs_map_hash(const char *s);

#endif
