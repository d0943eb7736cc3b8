/* oplog: the operation log. Request threads format a record and hand it to a
 * bounded queue; one writer thread drains it. A full queue drops the record
 * and counts it, so logging never stalls I/O. */
#ifndef PFS_OPLOG_H
#define PFS_OPLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pfs_log_format { PFS_LOG_TEXT, PFS_LOG_JSON };

struct pfs_logarg {
	const char *key;
	char type; /* 'i' signed, 'o' octal, 'x' hex, 's' string */
	union {
		int64_t i;
		uint64_t u;
		const char *s;
	};
};

#define PFS_LA_INT(k, v) { .key = (k), .type = 'i', .i = (int64_t)(v) }
#define PFS_LA_OCT(k, v) { .key = (k), .type = 'o', .u = (uint64_t)(v) }
#define PFS_LA_HEX(k, v) { .key = (k), .type = 'x', .u = (uint64_t)(v) }
#define PFS_LA_STR(k, v) { .key = (k), .type = 's', .s = (v) }
#define PFS_LA_END { .key = NULL }

struct pfs_oprec {
	const char *op;
	const char *path;  /* virtual path, or NULL */
	const char *path2; /* second path (rename/link target), or NULL */
	const struct pfs_logarg *args; /* PFS_LA_END-terminated, or NULL */
	int64_t result;    /* >= 0, or -errno */
	uint64_t t0_ns, t1_ns; /* CLOCK_REALTIME */
};

struct pfs_oplog;

/* Format one record as text (two lines) or one JSON line. malloc'd, or NULL. */
char *pfs_oplog_format(enum pfs_log_format fmt, const struct pfs_oprec *rec);

/* Open the destination ("-" = a duplicate of stderr). No thread yet, so the
 * caller may still fork. 0 or -errno. */
int pfs_oplog_open(struct pfs_oplog **out, const char *path, enum pfs_log_format fmt,
		   size_t capacity);
/* Write the start record and start the writer thread. */
int pfs_oplog_start(struct pfs_oplog *lg, const char *source, const char *mountpoint,
		    const char *note);
void pfs_oplog_op(struct pfs_oplog *lg, const struct pfs_oprec *rec);
uint64_t pfs_oplog_dropped(struct pfs_oplog *lg);
/* Release without writing anything: the forked daemon owns the log now. */
void pfs_oplog_discard(struct pfs_oplog *lg);
/* Drain, write the end record, stop the thread, close. Returns dropped count. */
uint64_t pfs_oplog_close(struct pfs_oplog *lg);

#endif
