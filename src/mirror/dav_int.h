/* dav_int: what dav.c and dav_xml.c share — reading a PROPFIND or
 * PROPPATCH multistatus reply (libxml2), and the dead properties prismfs
 * keeps a file's metadata in. */
#ifndef PFS_DAV_INT_H
#define PFS_DAV_INT_H

#include <stddef.h>

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

#include "mirror/http.h"
#include "mirror/remote.h"

/* The namespace of prismfs's dead properties: mode (octal), uid, gid,
 * mtime ("SECONDS.NANOSECONDS"). */
#define PFS_DAV_NS "urn:x-prismfs:meta"

/* Called once per <response>: href as the server spelled it (escaped,
 * maybe an absolute URL), st from its 200 propstat. Non-zero stops. */
typedef int (*pfs_dav_resp_fn)(const char *href, const struct pfs_rstat *st, void *arg);

/* Walk a 207 multistatus body. 0, the callback's non-zero, or -EIO when
 * it is not one (the message in err). */
int pfs_dav_parse_multistatus(const char *body, size_t len, pfs_dav_resp_fn fn, void *arg,
			      char *err, size_t errlen);

/* A PROPPATCH's 207: 0 when every property was set, else the errno of
 * the first refusal (403/405/409: -EOPNOTSUPP; other: from its status). */
int pfs_dav_parse_proppatch(const char *body, size_t len, char *err, size_t errlen);

/* The PROPPATCH body setting meta's fields; malloc'ed, NULL on no memory. */
char *pfs_dav_proppatch_body(const struct pfs_rmeta *meta);

struct pfs_dav {
	struct pfs_remote r;
	struct pfs_http *h;
	char *base;     /* scheme://host[:port][/escaped root], no trailing '/', no userinfo */
	char *rootpath; /* the root's path, unescaped, no trailing '/' ("" for /) */
	char *userpwd;  /* "user:password" or NULL */
	bool mkcol_lax; /* MKCOL on an existing collection succeeds (rclone):
			 * mkdir looks first to report -EEXIST */
};

/* Headers, with allocation failure remembered rather than checked at each
 * append. */
struct pfs_dav_hdrs {
	struct curl_slist *l;
	bool oom;
};

struct pfs_dav_req {
	const char *method;
	const char *path;
	bool dir;
	struct curl_slist *hdrs;
	const char *body;
	int in_fd;
	uint64_t in_len;
	int out_fd;
	bool nobody;
};


void pfs_dav_hdr(struct pfs_dav_hdrs *hs, const char *fmt, const char *v);
/* One request to path under the root (a collection's URL ends in '/').
 * 0 when a reply came (its status in rs), or a transport -errno. */
int pfs_dav_do(struct pfs_dav *d, const struct pfs_dav_req *q, struct pfs_http_resp *rs,
	       char *err, size_t errlen);
/* pfs_dav_do with the headers hs made for it (freed here, whatever
 * happens; -ENOMEM if making them ran out of memory). */
int pfs_dav_send(struct pfs_dav *d, struct pfs_dav_req *q, struct pfs_dav_hdrs *hs,
		 struct pfs_http_resp *rs, char *err, size_t errlen);
/* PROPFIND path at depth ("0", "1"): itself into *self, its children (at
 * depth 1) into *list when non-NULL. */
int pfs_dav_propfind(struct pfs_dav *d, const char *path, bool dir, const char *depth,
		     struct pfs_rlist *list, struct pfs_rstat *self, char *err, size_t errlen);
/* err = "METHOD /path: HTTP status"; returns e. */
int pfs_dav_fail(const char *method, const char *path, long status, int e, char *err,
		 size_t errlen);
/* In dav_open.c: the address, OPTIONS, the capability probe. */
int pfs_dav_setup(struct pfs_dav *d, const char *url, const struct pfs_remote_opts *o,
		  char *err, size_t errlen);

#endif
