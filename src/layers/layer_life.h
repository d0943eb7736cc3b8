/* layer_life: what the daemon of a copy-on-write mount does with its layers
 * outside the FUSE session. Before mounting: finish an interrupted commit
 * of SOURCE, and find or make the work directory. After the session
 * has ended and nothing holds files in the layers any more: preserve,
 * discard or commit the upper (commit.h does the work).
 *
 * Functions return 0 or a negative errno and, on failure, write one line
 * (no "prismfs:" prefix, no newline) to err. */
#ifndef PFS_LAYER_LIFE_H
#define PFS_LAYER_LIFE_H

#include <stdbool.h>
#include <stddef.h>

#include "layers/layer_opts.h"
#include "ctl/progress.h"

struct pfs_store;

/* The layers by absolute path: the daemon leaves the caller's working
 * directory when it goes to the background, and finalizes by path after
 * its descriptors are closed. */
struct pfs_layer_paths {
	char *upper;
	char *work;
	bool work_made;   /* made by this mount: removed again if it never mounts */
	char **lowers;    /* highest first; lowers[0] is SOURCE, what commit applies to */
	size_t nlowers;
	enum pfs_whiteout whiteout; /* the mount's --whiteout: a commit keeps its form */
	struct pfs_store *store;    /* the mount's store: what recovery and the action use */
};

/* If SOURCE has the journal of an interrupted commit beside it, finish or
 * roll back an atomic one, complete an in-place one (so the mount shows a
 * whole tree). note gets one line saying what was done, or "" when there
 * was nothing to do. Then refuse an upper that still holds an in-place
 * commit cut short (into another lower): applied or not, half emptied, it
 * shows no true view. upper may be NULL. */
int pfs_layers_recover(struct pfs_store *store, const char *source, const char *upper, char *note, size_t notelen,
		       char *err, size_t errlen);

/* Fill lp from the command line's layers (spec: upper, work, lowers and
 * whiteout; the paths as given): the upper must exist and be a directory;
 * the work directory is spec->work (which must exist), or else .NAME.prismfs-work
 * beside the upper (made 0700 if missing), which must then be on the
 * upper's filesystem. source is SOURCE's canonical path. The lowers are
 * made absolute where they exist; checking them is pfs_layers_open's job. */
struct pfs_layer_spec;
int pfs_layer_paths_get(struct pfs_layer_paths *lp, struct pfs_store *store,
			const struct pfs_layer_spec *spec, const char *source, char *err,
			size_t errlen);
/* The mount did not happen: remove the work directory if this mount made
 * it (and it is still empty). */
void pfs_layer_paths_abandon(struct pfs_layer_paths *lp);
void pfs_layer_paths_free(struct pfs_layer_paths *lp);

/* Record on the upper's root which lowers lie below SOURCE (ovlfmt.h,
 * PFS_OVL_LOWERS), or that none does. Best effort: an upper whose
 * filesystem takes no extended attributes cannot say. */
void pfs_layers_record_lowers(const struct pfs_layer_paths *lp);

/* Run action on lp's upper. On success msg says what was done in one line
 * ("" for preserve); on failure it holds the error line. A failed commit
 * keeps the upper (pfs_commit guarantees it). sink (or NULL) gets a
 * commit's progress counts as they change, paced as a progress line. */
int pfs_layers_finalize(const struct pfs_layer_paths *lp, enum pfs_action action,
			pfs_progress_sink sink, void *sink_arg, char *msg, size_t msglen);

#endif
