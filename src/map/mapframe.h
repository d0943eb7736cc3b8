/* mapframe: framing of mapping updates on a named pipe. */
#ifndef PFS_MAPFRAME_H
#define PFS_MAPFRAME_H

#include <stdbool.h>
#include <stddef.h>

/* mapframe: messages on a named pipe are a 4-byte big-endian length and that
 * many bytes of JSON. The decoder is fed whatever read() returned. */
struct pfs_frame_dec {
	size_t cap;       /* largest message accepted */
	unsigned char hdr[4];
	size_t hdr_have;
	size_t need;      /* length of the message being read */
	char *buf;        /* grows as bytes arrive, never to more than need */
	size_t have, alloc;
	bool skipping;    /* after a framing error: ignore bytes until EOF */
};
typedef void (*pfs_frame_msg_fn)(const char *msg, size_t len, void *arg);
typedef void (*pfs_frame_err_fn)(const char *reason, void *arg);
void pfs_frame_init(struct pfs_frame_dec *d, size_t cap);
/* Calls msg for every complete message in order. A length over the cap calls
 * err once and ignores everything up to pfs_frame_eof(). Returns 0 or -ENOMEM
 * (the message being read is then dropped and reported through err). */
int pfs_frame_feed(struct pfs_frame_dec *d, const void *p, size_t n, pfs_frame_msg_fn msg,
		   pfs_frame_err_fn err, void *arg);
/* The writers closed the pipe: a message in progress is dropped (err says how
 * much of it came); the decoder starts afresh for the next writer. */
void pfs_frame_eof(struct pfs_frame_dec *d, pfs_frame_err_fn err, void *arg);
void pfs_frame_free(struct pfs_frame_dec *d);

#endif
