/* http: one HTTP exchange with a remote server, over libcurl — what the
 * WebDAV (dav.c) and S3 (s3.c) clients share: a reused connection, bodies
 * streamed from and to descriptors (memory stays bounded), small bodies
 * (XML) in memory up to a cap, reply headers kept, SigV4 signing by
 * libcurl itself (CURLOPT_AWS_SIGV4), transport errors as errnos.
 *
 * One struct pfs_http per remote, used by one thread at a time. */
#ifndef PFS_HTTP_H
#define PFS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct curl_slist;

struct pfs_http;

/* timeout_ms: one request's limit (0: 30 s). 0 or -errno with err. */
int pfs_http_new(struct pfs_http **out, long timeout_ms, char *err, size_t errlen);
void pfs_http_free(struct pfs_http *h);

struct pfs_http_req {
	const char *method;          /* "GET", "PUT", "PROPFIND", ... */
	const char *url;             /* the full URL, already escaped */
	struct curl_slist *headers;  /* extra headers (the caller's), or NULL */
	const char *body;            /* a small request body, or NULL */
	size_t bodylen;
	int in_fd;                   /* or: stream in_len bytes from in_fd at in_off */
	uint64_t in_off, in_len;     /* (in_fd < 0: none) */
	int out_fd;                  /* the reply body appended to out_fd; < 0:
				      * kept in memory (see max_body) */
	size_t max_body;             /* in-memory reply cap (0: 64 MiB); past it -EFBIG */
	bool no_body;                /* HEAD */
	const char *aws_sigv4;       /* "aws:amz:REGION:s3" or NULL */
	const char *userpwd;         /* "KEY:SECRET" (SigV4) or NULL */
};

struct pfs_http_hdr {
	char *name;  /* lower case */
	char *value; /* trimmed */
};

struct pfs_http_resp {
	long status;                 /* the final HTTP status */
	char *body;                  /* in-memory body, NUL-terminated (NULL if none) */
	size_t len;
	struct pfs_http_hdr *hdrs;   /* the final reply's headers */
	size_t nhdrs;
};

/* Perform rq. 0 when a reply came, whatever its status (the caller maps
 * it); -ECONNREFUSED, -ETIMEDOUT, -ECONNRESET, -EHOSTUNREACH, -EIO (other
 * transport errors), -ENOMEM, or the -errno of a descriptor's read or write,
 * with a one-line message in err. */
int pfs_http_do(struct pfs_http *h, const struct pfs_http_req *rq, struct pfs_http_resp *rs,
		char *err, size_t errlen);
void pfs_http_resp_free(struct pfs_http_resp *rs);

/* A reply header's value (name in any case), or NULL. */
const char *pfs_http_header(const struct pfs_http_resp *rs, const char *name);

/* The errno an HTTP status stands for (2xx: 0): 404 -ENOENT, 412
 * -ESTALE, 409 -ENOENT for a missing parent is the caller's call (here
 * -EIO... see dav.c), 401/403 -EACCES, 405/501 -EOPNOTSUPP, 507 -ENOSPC,
 * 413 -EFBIG, 423 -EBUSY, 5xx -EIO. */
int pfs_http_errno(long status);

/* path ("a/b c") with every byte outside RFC 3986's unreserved set and
 * '/' percent-encoded ("a/b%20c"); malloc'ed, NULL on no memory. */
char *pfs_http_escape_path(const char *path);
/* The reverse, in place (for hrefs and keys in replies). -EINVAL on a
 * malformed escape. */
int pfs_http_unescape(char *s);

/* An HTTP date (RFC 7231 IMF-fixdate, as Last-Modified) to seconds, and
 * seconds to one (buf >= 32). -EINVAL / 0. */
int pfs_http_parse_date(const char *s, int64_t *secs);
void pfs_http_format_date(int64_t secs, char *buf, size_t len);

#endif
