/* evict: keeping the cache within its size — clean file data evicted
 * least recently used, by turning the file back into a stub (its data
 * punched out, its size and attributes kept, state STUB: the next open
 * loads it again from the mirror).
 *
 * What is never evicted: a file anyone has open. Before punching, the
 * evictor takes a write lease on the file (fcntl(2), F_SETLEASE), which
 * the kernel grants only while no other open file description of it
 * exists — the view's open files, the kernel's passthrough backing files,
 * mappings that outlive their close(2), and the descriptor every pending
 * DATA op of the write-back queue holds until it is applied (so dirty data
 * is never evicted before it is on the mirror). An open racing with the
 * eviction waits in the kernel until the lease is given back, by then the
 * file is marked STUB, and the open loads it (cache.c).
 *
 * Triggers: a load that would not fit (pfs_evict_room_locked, with
 * c->load_lock held), an open for writing (room for a writer: the use
 * brought down to the low mark), and a background thread that brings the
 * use down to the low mark whenever it passes the high mark (woken at each
 * write into the cache — a fanotify mark on its filesystem sees kernel
 * passthrough writes too —, at each release, and twice a second). A writer
 * served by the daemon (cache_spill.c) that finds the cache full moves its
 * file out of memory instead. One that opens the file while a passthrough
 * reader of it is live (a descriptor or a mapping; a reader closed but
 * not yet released is waited for, up to 2 s: view/node_open.c,
 * view/file.c) writes by
 * passthrough until its own close, even once the reader is gone, and can
 * still outrun it (a short write once memory is full).
 *
 * Memory: one record per file with data in the cache (a tmpfs file with
 * data takes at least a page, so at most size/4096 records, ~100 bytes
 * each). Lock order: c->load_lock -> ev->lock; ev->lock is a leaf. */
#ifndef PFS_EVICT_H
#define PFS_EVICT_H

#include <stdint.h>
#include <sys/stat.h>

struct pfs_cache;
struct pfs_evict;

/* An evictor for c, whose memory filesystem holds size bytes. 0 or -errno. */
int pfs_evict_new(struct pfs_evict **out, struct pfs_cache *c, uint64_t size);
/* Start its background thread (in the serving process). 0 or -errno. */
int pfs_evict_start(struct pfs_evict *ev);
/* Stop the thread and free everything. ev may be NULL. */
void pfs_evict_free(struct pfs_evict *ev);

/* The regular file fd (st: its fstat) of the cache was just used: it is
 * the most recently used now. */
void pfs_evict_touch(struct pfs_evict *ev, int fd, const struct stat *st);
/* fd is being released: as touch, and wake the background thread. */
void pfs_evict_released(struct pfs_evict *ev, int fd);

/* Evict clean data until bytes more fit (c->load_lock held / not held). */
void pfs_evict_room_locked(struct pfs_evict *ev, uint64_t bytes);
/* Room for a writer: the use brought down to the low mark. */
void pfs_evict_for_writer(struct pfs_evict *ev);

void pfs_evict_counts(struct pfs_evict *ev, uint64_t *evictions, uint64_t *bytes);

#endif
