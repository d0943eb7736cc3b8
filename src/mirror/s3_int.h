/* s3_int: what s3.c and s3_xml.c share — the replies of S3's XML API read
 * with libxml2. Not for other modules: they go through remote.h. */
#ifndef PFS_S3_INT_H
#define PFS_S3_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* One page of ListObjectsV2. Keys are full keys (the bucket's prefix
 * included), as the server spells them. */
struct pfs_s3_obj {
	char *key;
	uint64_t size;
	char etag[128];
	struct timespec mtime;
};

struct pfs_s3_page {
	struct pfs_s3_obj *objs;
	size_t nobjs, capobjs;
	char **prefixes; /* CommonPrefixes, each ending in the delimiter */
	size_t nprefixes, capprefixes;
	bool truncated;
	char *next_token; /* NextContinuationToken, NULL when none */
};

/* 0, -ENOMEM, or -EIO for a body that is not a ListBucketResult. */
int pfs_s3_parse_list(const char *body, size_t len, struct pfs_s3_page *pg);
void pfs_s3_page_free(struct pfs_s3_page *pg);

/* The text of the first element named name anywhere in body (UploadId,
 * ETag, Code, ...), malloc'ed; -ENOENT when absent, -EIO when body is not
 * XML, -ENOMEM. */
int pfs_s3_xml_text(const char *body, size_t len, const char *name, char **out);

/* An ISO 8601 time as S3 writes it ("2026-12-06T22:46:20.000Z"). */
int pfs_s3_parse_iso(const char *s, struct timespec *ts);

/* ---- the client (s3.c, s3_ops.c) ---- */
#include "mirror/http.h"
#include "mirror/remote.h"

struct pfs_s3 {
	struct pfs_remote pub;
	struct pfs_http *h;
	char *endpoint;    /* "http://host:port", no trailing '/' */
	char *bucket;
	char *prefix;      /* "" or "some/prefix/" */
	char sigv4[96];    /* "aws:amz:REGION:s3" */
	char *userpwd;     /* "KEY:SECRET" */
	char *token;       /* x-amz-security-token, or NULL */
	uint64_t put_max;  /* a single PUT up to this size, else multipart */
	uint64_t part;     /* multipart part size */
	unsigned max_keys; /* ListObjectsV2 page size */
};

/* One query parameter (name=value, the value escaped here), for s3_call;
 * they must be given in sorted order (curl 7.88 signs them as written). */
struct pfs_s3_q {
	const char *name;
	const char *value;
};

struct pfs_s3_call {
	const char *method;
	const char *key;            /* full key, unescaped ("" the bucket) */
	const struct pfs_s3_q *q;   /* NULL-name terminated, or NULL */
	struct curl_slist *hdrs;    /* extra headers (consumed: freed by s3_call) */
	const char *body;
	size_t bodylen;
	int in_fd;
	uint64_t in_off, in_len;
	int out_fd;
	bool head;
};

/* Perform c; 0 when a reply came (rs->status says how it went). */
int pfs_s3_call(struct pfs_s3 *s, struct pfs_s3_call *c, struct pfs_http_resp *rs, char *err,
		size_t errlen);
/* rs's status as an errno (2xx: 0; also an <Error> in a 200 body, as
 * CopyObject and CompleteMultipartUpload may send), err naming the call. */
int pfs_s3_status(const struct pfs_s3_call *c, const struct pfs_http_resp *rs, char *err,
		  size_t errlen);
/* The full key of path (prefix + path), plus suffix; malloc'ed or NULL. */
char *pfs_s3_key(const struct pfs_s3 *s, const char *path, const char *suffix);
/* HEAD key: 0 with *st, -ENOENT, or another -errno. */
int pfs_s3_head(struct pfs_s3 *s, const char *key, struct pfs_rstat *st, char *err,
		size_t errlen);
/* One ListObjectsV2 page of prefix (delimiter "/" or NULL). */
int pfs_s3_list_page(struct pfs_s3 *s, const char *prefix, const char *delim, unsigned max,
		     const char *token, struct pfs_s3_page *pg, char *err, size_t errlen);
/* Headers carrying meta (x-amz-meta-*) appended to *l. */
int pfs_s3_meta_hdrs(struct curl_slist **l, const struct pfs_rmeta *m);
/* Etags compared without quotes or W/. */
bool pfs_s3_etag_eq(const char *a, const char *b);
/* The etag without quotes (Ceph's If-Match wants it so), into buf. */
void pfs_s3_etag_bare(const char *etag, char *buf, size_t len);

int pfs_s3_stat(struct pfs_remote *r, const char *path, struct pfs_rstat *st, char *err,
		size_t errlen);
int pfs_s3_put(struct pfs_remote *r, const char *path, int fd, uint64_t size,
	       const struct pfs_rmeta *meta, const char *if_match, struct pfs_rstat *out,
	       char *err, size_t errlen);
int pfs_s3_mkdir(struct pfs_remote *r, const char *path, const struct pfs_rmeta *meta,
		 char *err, size_t errlen);
int pfs_s3_remove(struct pfs_remote *r, const char *path, bool dir, const char *if_match,
		  char *err, size_t errlen);
int pfs_s3_move(struct pfs_remote *r, const char *from, const char *to, bool dir,
		bool noreplace, char *err, size_t errlen);
int pfs_s3_setmeta(struct pfs_remote *r, const char *path, bool dir,
		   const struct pfs_rmeta *meta, struct pfs_rstat *out, char *err,
		   size_t errlen);

#endif
