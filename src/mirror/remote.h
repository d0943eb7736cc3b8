/* remote: a file server spoken to over HTTP — WebDAV (mirror/dav.c) or an
 * S3 object store (mirror/s3.c) — as one table of object operations, so
 * that write-back order, conflicts and retries live once, in
 * mirror/remote.c, above them.
 *
 * Paths are relative to the address's root (its path, or the bucket's
 * prefix), no leading '/', "" the root; an implementation adds the trailing
 * slash or percent-encoding its server wants. Data is streamed between a
 * descriptor and the connection: memory stays bounded whatever the size.
 * Connections are reused (one libcurl easy handle per remote; a remote is
 * used by one thread at a time — the caller serialises).
 *
 * Errors: -ENOENT (404), -EEXIST (the name is taken: MKCOL 405, a create
 * that found something), -ESTALE (412: a condition failed — someone else
 * changed it), -ENOTEMPTY, -ENOSPC (507, quota), -EACCES (401/403),
 * -EOPNOTSUPP (the server cannot: 405/501 on a method it lacks), -EIO (5xx,
 * a reply that cannot be read), -ECONNREFUSED, -ETIMEDOUT, -ECONNRESET
 * (transport). Each fills err with one line naming the method, the path and
 * the server's status. */
#ifndef PFS_REMOTE_H
#define PFS_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* An object's metadata as the server gives it. */
struct pfs_rstat {
	bool dir;
	uint64_t size;
	struct timespec mtime;  /* kept mtime if the server keeps one we set,
				 * else its Last-Modified */
	unsigned has;           /* PFS_RMETA_*: which of mode/uid/gid came back */
	mode_t mode;            /* permission bits only */
	uid_t uid;
	gid_t gid;
	char etag[128];         /* as the server spells it (quotes and W/ kept),
				 * "" when it gives none */
	int64_t listed_mtime;   /* the mtime (s) a listing shows of it where
				 * that is not mtime (S3: Last-Modified, a
				 * listing carries no metadata), else 0 */
};

#define PFS_RMETA_MODE 1u
#define PFS_RMETA_OWNER 2u
#define PFS_RMETA_MTIME 4u

/* Metadata to keep with an object, as far as the server can (has says
 * which fields are set). */
struct pfs_rmeta {
	unsigned has;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	struct timespec mtime;
};

struct pfs_rent {
	char *name;
	struct pfs_rstat st;
};

struct pfs_rlist {
	struct pfs_rent *v;
	size_t n, cap;
};

void pfs_rlist_free(struct pfs_rlist *l);
int pfs_rlist_add(struct pfs_rlist *l, const char *name, const struct pfs_rstat *st);

/* What a server supports, found at open (OPTIONS, a probe). */
#define PFS_RCAP_IF_MATCH 0x01u   /* If-Match / If-None-Match: * honoured on
				   * PUT (and DELETE where noted) */
#define PFS_RCAP_META 0x02u       /* mode, owner, mtime kept (dead properties,
				   * object metadata) */
#define PFS_RCAP_MTIME_DATE 0x04u /* mtime set by a Date: header on PUT */
#define PFS_RCAP_RANGE_PUT 0x08u  /* partial PUT with Content-Range */
#define PFS_RCAP_DEL_COND 0x10u   /* DELETE honours If-Match */
#define PFS_RCAP_ETAG 0x20u       /* listings and PUT replies carry ETags */
#define PFS_RCAP_LIST_META 0x40u  /* listings carry the metadata kept (WebDAV's
				   * PROPFIND the dead properties; S3's
				   * ListObjectsV2 carries none) */

struct pfs_remote;

struct pfs_remote_ops {
	const char *kind; /* "webdav", "s3" */

	int (*stat)(struct pfs_remote *r, const char *path, struct pfs_rstat *st, char *err,
		    size_t errlen);
	/* The entries of directory path (not itself), fetched in pages. */
	int (*list)(struct pfs_remote *r, const char *path, struct pfs_rlist *out, char *err,
		    size_t errlen);
	/* path's whole content appended to fd; *st describes what was read
	 * (etag of that very content). */
	int (*get)(struct pfs_remote *r, const char *path, int fd, struct pfs_rstat *st,
		   char *err, size_t errlen);
	/* Replace path's content by size bytes of fd from offset 0, with meta.
	 * if_match: NULL unconditional, "*" only if path does not exist
	 * (If-None-Match: *), else only if its etag is this one; -ESTALE when
	 * the condition fails. Parents exist (the caller made them). *out (may
	 * be NULL): the new object's metadata, etag included when the server
	 * says it (else a stat after). Large data in parts where the server
	 * wants it (S3 multipart). */
	int (*put)(struct pfs_remote *r, const char *path, int fd, uint64_t size,
		   const struct pfs_rmeta *meta, const char *if_match, struct pfs_rstat *out,
		   char *err, size_t errlen);
	/* A directory (WebDAV collection; S3: the empty marker "path/").
	 * -EEXIST if something is there. */
	int (*mkdir)(struct pfs_remote *r, const char *path, const struct pfs_rmeta *meta,
		     char *err, size_t errlen);
	/* Remove a file (dir false; if_match as for put, NULL unconditional)
	 * or an empty directory (dir true). -ENOENT when absent. */
	int (*remove)(struct pfs_remote *r, const char *path, bool dir, const char *if_match,
		      char *err, size_t errlen);
	/* Move a file or a whole directory. noreplace: -EEXIST if to exists;
	 * else to is replaced. S3: copy then delete, every key under a
	 * directory's prefix (not atomic on the server: the caller's journal
	 * makes it so in the view). */
	int (*move)(struct pfs_remote *r, const char *from, const char *to, bool dir,
		    bool noreplace, char *err, size_t errlen);
	/* Keep meta with path; -EOPNOTSUPP where the server cannot. *out (may
	 * be NULL): its metadata after (S3's copy-in-place changes the etag). */
	int (*setmeta)(struct pfs_remote *r, const char *path, bool dir,
		       const struct pfs_rmeta *meta, struct pfs_rstat *out, char *err,
		       size_t errlen);
	void (*close)(struct pfs_remote *r);
};

struct pfs_remote {
	const struct pfs_remote_ops *ops;
	unsigned caps;    /* PFS_RCAP_* */
	char server[128]; /* what it said it is (Server: header), for status */
};

struct pfs_remote_opts {
	const char *s3_endpoint;
	const char *s3_region;
	const char *s3_profile;
	long timeout_ms; /* per request, 0: 30 s */
};

/* http://, https://, dav://, davs:// */
int pfs_dav_open(struct pfs_remote **out, const char *url, const struct pfs_remote_opts *o,
		 char *err, size_t errlen);
/* s3://BUCKET[/PREFIX] */
int pfs_s3_open(struct pfs_remote **out, const char *url, const struct pfs_remote_opts *o,
		char *err, size_t errlen);

struct pfs_mirror;
struct pfs_mirror_opts;

/* A mirror (mirror.h) on the server at url, any scheme above (remote.c). */
int pfs_mirror_remote_open(struct pfs_mirror **out, const char *url,
			   const struct pfs_mirror_opts *o, char *err, size_t errlen);

#endif
