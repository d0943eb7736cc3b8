/* progress: one updating line on a terminal (files and bytes done / total)
 * for long operations. Silent unless enabled; drawn at most every interval.
 * The same counts can also go to a sink at that pace (the daemon sends them
 * to a waiting `prismfs unmount`), as one-line records (encode/decode). */
#ifndef PFS_PROGRESS_H
#define PFS_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct pfs_progress;

/* Called with the counts whenever a line would be drawn. */
typedef void (*pfs_progress_sink)(void *arg, const struct pfs_progress *p);

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
	pfs_progress_sink sink;
	void *sink_arg;
};

/* on: draw at all (the caller decides, e.g. isatty). */
void pfs_progress_init(struct pfs_progress *p, bool on, FILE *out, const char *what);
/* Also hand the counts to sink at the drawing pace, drawn or not. */
void pfs_progress_set_sink(struct pfs_progress *p, pfs_progress_sink sink, void *arg);
void pfs_progress_bytes(struct pfs_progress *p, uint64_t n);
/* One entry finished; size: its byte count toward the total (its ticks so
 * far are replaced by it, so holes and skipped reads still add up). */
void pfs_progress_file(struct pfs_progress *p, uint64_t size);
void pfs_progress_shared(struct pfs_progress *p);
/* Draw the current counts now, whatever the interval (counts that arrive
 * already paced, e.g. decoded records). */
void pfs_progress_redraw(struct pfs_progress *p);
/* Clear the line (if drawn). */
void pfs_progress_end(struct pfs_progress *p);

/* pfs_fcopy_tick-compatible: arg is the struct pfs_progress. */
void pfs_progress_tick(void *arg, uint64_t n);

/* The counts as one line, newline included:
 * "progress FILES FILES_TOTAL BYTES BYTES_TOTAL SHARED\n". Returns its
 * length, or -ENOSPC when buf is too small. */
int pfs_progress_encode(const struct pfs_progress *p, char *buf, size_t len);
/* Parse such a line (without its newline) into p's counts; 0 or -EINVAL
 * (then p is unchanged). */
int pfs_progress_decode(const char *line, struct pfs_progress *p);

#endif
