/* progress: one updating line on a terminal (files and bytes done / total)
 * for long operations. Silent unless enabled; drawn at most every interval. */
#ifndef PFS_PROGRESS_H
#define PFS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct pfs_progress {
	bool on;
	bool drawn;          /* something is on the line: clear it when done */
	FILE *out;
	const char *what;    /* "commit" */
	uint64_t files, files_total;
	uint64_t bytes, bytes_total;
	uint64_t file_start; /* bytes when the current file started */
	uint64_t shared;     /* unchanged entries shared with the old tree */
	uint64_t interval_ns, next_ns;
};

/* on: draw at all (the caller decides, e.g. isatty). */
void pfs_progress_init(struct pfs_progress *p, bool on, FILE *out, const char *what);
void pfs_progress_bytes(struct pfs_progress *p, uint64_t n);
/* One entry finished; size: its byte count toward the total (its ticks so
 * far are replaced by it, so holes and skipped reads still add up). */
void pfs_progress_file(struct pfs_progress *p, uint64_t size);
void pfs_progress_shared(struct pfs_progress *p);
/* Clear the line (if drawn). */
void pfs_progress_end(struct pfs_progress *p);

/* pfs_fcopy_tick-compatible: arg is the struct pfs_progress. */
void pfs_progress_tick(void *arg, uint64_t n);

#endif
