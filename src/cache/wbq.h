/* wbq: the write-back queue of a memory cache — the changes made in the
 * cache, in the order they were made, waiting to be applied to the mirror.
 *
 * One worker thread applies them in order, through a callback (the mirror's,
 * mirror/mirror.h), so the mirror goes through the same
 * sequence of states the view went through and is a valid tree at every
 * moment. Nothing is ever dropped: an op that fails stays at the head and is
 * tried again, with a growing pause, until it succeeds or the queue is
 * stopped without draining — then the caller gets the ops back (to keep in
 * a quarantine) instead of losing them.
 *
 * Durability is asked for by sequence number: pfs_wbq_wait(q, seq) returns
 * once every op up to seq is applied (fsync: the file's own ops; sync: all
 * of them), or with the mirror's error if the op it waits for failed since
 * the wait began. Writers are held back by bytes: pfs_wbq_room() blocks
 * while the data not yet written back exceeds the dirty limit.
 *
 * Lock order: q->lock only; the apply callback runs without it (record and
 * cancel run under it, and take the journal's leaf lock). */
#ifndef PFS_WBQ_H
#define PFS_WBQ_H

#include "mirror/wbop.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* Called after an op is applied (under no lock). */
typedef void pfs_wb_done_fn(void *arg, const struct pfs_wb_op *op);
/* Record op in a journal (cache/journal.h) before it is queued: called by
 * pfs_wbq_push, under the queue's lock, so records are in queue order. An
 * op merged into one already queued is not recorded again. 0 or -errno
 * (the op is queued all the same). */
typedef int pfs_wb_record_fn(void *arg, const struct pfs_wb_op *op);

/* Undo the record of a held op the cache's tree refused (rare), under the
 * queue's lock. */
typedef void pfs_wb_cancel_fn(void *arg, const struct pfs_wb_op *op);

struct pfs_wbq_opts {
	pfs_wb_apply_fn *apply;
	pfs_wb_apply_new_fn *apply_new; /* may be NULL: every op alone */
	pfs_wb_done_fn *done;     /* may be NULL */
	pfs_wb_flush_fn *flush;   /* may be NULL: applied is durable */
	pfs_wb_record_fn *record; /* may be NULL: no journal */
	pfs_wb_cancel_fn *cancel; /* may be NULL: no journal */
	void *arg;
	uint64_t delay_ns;        /* an op waits this long before it is applied,
				   * unless someone waits for it */
	uint64_t max_dirty;       /* bytes of DATA not yet applied; 0: no limit */
	uint64_t retry_min_ns;    /* first pause after a failure (doubles) */
	uint64_t retry_max_ns;
};

struct pfs_wbq;

/* Start the queue and its worker. 0 or -errno. */
int pfs_wbq_start(struct pfs_wbq **out, const struct pfs_wbq_opts *o);

/* Queue op (owned from now on): its sequence number. A DATA op replaces a
 * DATA op of the same key that is the newest queued op of that key and not
 * yet being applied (repeated writes to one file cost one write-back): the
 * queued op takes the new one's fd, datafd and flags (its data source is
 * the newer, which may be a file moved out of memory since). */
uint64_t pfs_wbq_push(struct pfs_wbq *q, struct pfs_wb_op *op);

/* Queue op as pfs_wbq_push does (never merged), before the cache's tree
 * makes its change, held: the worker does not apply it (nor anything
 * after it) until pfs_wbq_release says whether the tree made it (done) or
 * refused it (the op is cancelled: its record undone, never applied).
 * Why: recorded after the tree's change, a kill between the two left a
 * change in the tree (DIR/tree outlives the daemon) that the journal did
 * not have — the mirror never got it, and the data of an open file
 * followed the tree's name to nowhere. Recorded first, a replay settles a
 * held op by looking at the tree (cache/journal.h). The op stays the
 * queue's: valid until released. */
uint64_t pfs_wbq_push_held(struct pfs_wbq *q, struct pfs_wb_op *op);
void pfs_wbq_release(struct pfs_wbq *q, struct pfs_wb_op *op, bool done);

/* Call fn(op, arg), under the queue's lock, for each queued DATA op of key
 * that is not being applied (fn may change its fd, datafd and flags, not
 * its place or size). Returns the sequence number of the op of key being
 * applied now, or 0: none is (a cache file about to move out of memory
 * waits for it, then calls again). */
uint64_t pfs_wbq_data_each(struct pfs_wbq *q, uint64_t key,
			   void (*fn)(struct pfs_wb_op *op, void *arg), void *arg);

/* The newest sequence number given out (0: none). */
uint64_t pfs_wbq_last(struct pfs_wbq *q);
/* The newest RENAME or LINK given out (0: none): once every op up to it
 * is applied, the mirror holds each of the cache's names where the cache
 * has it (a name never filled or loaded has had no other change). */
uint64_t pfs_wbq_last_move(struct pfs_wbq *q);

/* Wait until every op up to seq is applied and flushed: 0, or the -errno
 * of the op the queue is stuck on if it failed after the wait began (it
 * stays queued). */
int pfs_wbq_wait(struct pfs_wbq *q, uint64_t seq);

/* Wait while more than the dirty limit of data is pending and bytes more
 * would not fit (a writer's turn). Returns at once when the pending data
 * is none, so one write larger than the limit still goes through. */
void pfs_wbq_room(struct pfs_wbq *q, uint64_t bytes);

struct pfs_wbq_stats {
	uint64_t pending_ops, pending_bytes, applied, failures;
	int last_err;             /* -errno of the last failure, 0: none since the last success */
	char last_msg[512];       /* its message */
};
void pfs_wbq_stats(struct pfs_wbq *q, struct pfs_wbq_stats *st);

/* Stop the worker. drain: first apply everything (waiting out failures
 * until it all succeeds or timeout_ns passes, 0: no limit). Whatever is
 * left is handed back in *left (oldest first, NULL: nothing), for the
 * caller to keep; the queue is freed. 0 when nothing is left, else -EIO.
 * Nobody may be in pfs_wbq_wait or pfs_wbq_room any more. */
int pfs_wbq_stop(struct pfs_wbq *q, bool drain, uint64_t timeout_ns, struct pfs_wb_op **left);

#endif
