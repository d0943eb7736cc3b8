/* dav: the object operations of remote.h spoken as WebDAV (RFC 4918) —
 * PROPFIND for stat and list, GET/PUT streamed, MKCOL, DELETE, MOVE,
 * PROPPATCH dead properties for metadata where the server keeps them.
 * What a server honours is probed once at open (see dav_probe) and kept in
 * caps, so the layer above knows which guarantees it really has. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "mirror/dav_int.h"
#include "mirror/http.h"
#include "mirror/remote.h"

static const char propfind_body[] =
	"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
	"<D:propfind xmlns:D=\"DAV:\" xmlns:P=\"" PFS_DAV_NS "\"><D:prop>"
	"<D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:getetag/>"
	"<P:mode/><P:uid/><P:gid/><P:mtime/></D:prop></D:propfind>\n";

void pfs_dav_hdr(struct pfs_dav_hdrs *hs, const char *fmt, const char *v)
{
	char line[512];
	struct curl_slist *n;

	snprintf(line, sizeof(line), fmt, v);
	n = curl_slist_append(hs->l, line);
	if (!n)
		hs->oom = true;
	else
		hs->l = n;
}

static char *dav_url(struct pfs_dav *d, const char *path, bool dir)
{
	char *esc = pfs_http_escape_path(path), *url = NULL;
	size_t n;

	if (!esc)
		return NULL;
	n = strlen(d->base) + strlen(esc) + 3;
	url = malloc(n);
	if (url)
		snprintf(url, n, "%s/%s%s", d->base, esc, dir && *path ? "/" : "");
	free(esc);
	return url;
}

int pfs_dav_do(struct pfs_dav *d, const struct pfs_dav_req *q, struct pfs_http_resp *rs, char *err,
		  size_t errlen)
{
	struct pfs_http_req rq = {
		.method = q->method, .headers = q->hdrs, .body = q->body,
		.bodylen = q->body ? strlen(q->body) : 0, .in_fd = q->in_fd,
		.in_len = q->in_len, .out_fd = q->out_fd, .no_body = q->nobody,
		.userpwd = d->userpwd,
	};
	char *url = dav_url(d, q->path, q->dir);
	int ret;

	if (!url) {
		snprintf(err, errlen, "%s /%s: out of memory", q->method, q->path);
		return -ENOMEM;
	}
	rq.url = url;
	ret = pfs_http_do(d->h, &rq, rs, err, errlen);
	free(url);
	return ret;
}

int pfs_dav_send(struct pfs_dav *d, struct pfs_dav_req *q, struct pfs_dav_hdrs *hs,
		 struct pfs_http_resp *rs, char *err, size_t errlen)
{
	int ret;

	if (hs->oom) {
		snprintf(err, errlen, "%s /%s: out of memory", q->method, q->path);
		ret = -ENOMEM;
	} else {
		q->hdrs = hs->l;
		ret = pfs_dav_do(d, q, rs, err, errlen);
	}
	curl_slist_free_all(hs->l);
	hs->l = NULL;
	return ret;
}

/* A status that is not a success, as errno and one line. */
int pfs_dav_fail(const char *method, const char *path, long status, int e, char *err,
		    size_t errlen)
{
	snprintf(err, errlen, "%s /%s: HTTP %ld", method, path, status);
	return e;
}

/* ---- PROPFIND ---- */

struct pf_ctx {
	struct pfs_dav *d;
	const char *want; /* the requested path, relative, no trailing '/' */
	struct pfs_rlist *list;
	struct pfs_rstat *self;
	bool self_seen;
	int err;
};

/* href -> path relative to the root, unescaped, no trailing '/'; NULL
 * when it lies outside the root. Points into href (modified). */
static char *href_rel(struct pfs_dav *d, char *href)
{
	char *p = href;
	size_t rl = strlen(d->rootpath);

	if (strncasecmp(p, "http://", 7) == 0 || strncasecmp(p, "https://", 8) == 0) {
		p = strchr(strstr(p, "://") + 3, '/');
		if (!p)
			return NULL;
	}
	if (pfs_http_unescape(p) != 0)
		return NULL;
	if (strncmp(p, d->rootpath, rl) != 0 || (p[rl] != '/' && p[rl] != '\0'))
		return NULL;
	p += rl;
	while (*p == '/')
		p++;
	for (size_t n = strlen(p); n > 0 && p[n - 1] == '/'; n--)
		p[n - 1] = '\0';
	return p;
}

static int pf_cb(const char *href, const struct pfs_rstat *st, void *arg)
{
	struct pf_ctx *c = arg;
	size_t wl = strlen(c->want);
	char *h = strdup(href), *rel;
	int ret = 0;

	if (!h)
		return -ENOMEM;
	rel = href_rel(c->d, h);
	if (!rel)
		goto out;
	if (strcmp(rel, c->want) == 0) {
		if (c->self)
			*c->self = *st;
		c->self_seen = true;
		goto out;
	}
	if (!c->list)
		goto out;
	/* A child of want: "want/name" (or "name" at the root). */
	if (wl) {
		if (strncmp(rel, c->want, wl) != 0 || rel[wl] != '/')
			goto out;
		rel += wl + 1;
	}
	if (!*rel || strchr(rel, '/'))
		goto out;
	ret = pfs_rlist_add(c->list, rel, st);
out:
	free(h);
	return ret;
}

int pfs_dav_propfind(struct pfs_dav *d, const char *path, bool dir, const char *depth,
			struct pfs_rlist *list, struct pfs_rstat *self, char *err, size_t errlen)
{
	struct pfs_dav_hdrs hs = {0};
	struct pfs_dav_req q = {.method = "PROPFIND", .path = path, .dir = dir, .body = propfind_body,
			 .in_fd = -1, .out_fd = -1};
	struct pfs_http_resp rs;
	struct pf_ctx c = {.d = d, .want = path, .list = list, .self = self};
	int ret;

	pfs_dav_hdr(&hs, "Depth: %s", depth);
	pfs_dav_hdr(&hs, "%s", "Content-Type: application/xml; charset=utf-8");
	ret = pfs_dav_send(d, &q, &hs, &rs, err, errlen);
	if (ret)
		return ret;
	/* A directory named without its slash: some servers redirect. */
	if ((rs.status == 301 || rs.status == 302) && !dir && *path) {
		pfs_http_resp_free(&rs);
		return pfs_dav_propfind(d, path, true, depth, list, self, err, errlen);
	}
	if (rs.status != 207) {
		ret = pfs_dav_fail("PROPFIND", path, rs.status,
			       pfs_http_errno(rs.status) ? pfs_http_errno(rs.status) : -EIO, err,
			       errlen);
		goto out;
	}
	ret = pfs_dav_parse_multistatus(rs.body, rs.len, pf_cb, &c, err, errlen);
	if (ret == -EIO) {
		char why[160];

		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "PROPFIND /%s: %s", path, why);
	} else if (ret) {
		snprintf(err, errlen, "PROPFIND /%s: %s", path, strerror(-ret));
	} else if (!c.self_seen) {
		ret = -EIO;
		snprintf(err, errlen, "PROPFIND /%s: the reply does not describe it", path);
	}
out:
	pfs_http_resp_free(&rs);
	return ret;
}

static void st_from_headers(const struct pfs_http_resp *rs, struct pfs_rstat *st)
{
	const char *v;
	int64_t secs;

	if ((v = pfs_http_header(rs, "etag")))
		snprintf(st->etag, sizeof(st->etag), "%s", v);
	if ((v = pfs_http_header(rs, "last-modified")) && pfs_http_parse_date(v, &secs) == 0 &&
	    !(st->has & PFS_RMETA_MTIME)) {
		st->mtime.tv_sec = (time_t)secs;
		st->mtime.tv_nsec = 0;
	}
}

/* A HEAD's or GET's reply: ok, *st from its headers; else the status's
 * errno with err. */
static int reply_stat(const struct pfs_http_resp *rs, bool ok, const char *method,
		      const char *path, struct pfs_rstat *st, char *err, size_t errlen)
{
	const char *v;
	int e = pfs_http_errno(rs->status);

	if (!ok)
		return pfs_dav_fail(method, path, rs->status, e ? e : -EIO, err, errlen);
	if ((v = pfs_http_header(rs, "content-length")))
		st->size = strtoull(v, NULL, 10);
	st_from_headers(rs, st);
	return 0;
}

static int dav_head(struct pfs_dav *d, const char *path, struct pfs_rstat *st, char *err,
		    size_t errlen)
{
	struct pfs_dav_req q = {.method = "HEAD", .path = path, .in_fd = -1, .out_fd = -1,
			 .nobody = true};
	struct pfs_http_resp rs;
	int ret = pfs_dav_do(d, &q, &rs, err, errlen);

	if (ret)
		return ret;
	ret = reply_stat(&rs, rs.status >= 200 && rs.status <= 299, "HEAD", path, st, err,
			 errlen);
	pfs_http_resp_free(&rs);
	return ret;
}

static int dav_stat(struct pfs_remote *r, const char *path, struct pfs_rstat *st, char *err,
		    size_t errlen)
{
	struct pfs_dav *d = (struct pfs_dav *)r;
	int ret;

	memset(st, 0, sizeof(*st));
	ret = pfs_dav_propfind(d, path, !*path, "0", NULL, st, err, errlen);
	if (ret == -EOPNOTSUPP) {
		memset(st, 0, sizeof(*st));
		return dav_head(d, path, st, err, errlen);
	}
	/* A server whose PROPFIND lacks getetag (nginx) still has one on
	 * HEAD: worth a request, since a file's etag is how change shows. */
	if (ret == 0 && !st->dir && !st->etag[0]) {
		struct pfs_rstat h = *st;

		if (dav_head(d, path, &h, err, errlen) == 0)
			snprintf(st->etag, sizeof(st->etag), "%s", h.etag);
	}
	return ret;
}

static int dav_list(struct pfs_remote *r, const char *path, struct pfs_rlist *out, char *err,
		    size_t errlen)
{
	struct pfs_dav *d = (struct pfs_dav *)r;
	struct pfs_rstat self = {0};
	int ret;

	/* Depth 1 is what every server allows (Depth: infinity is commonly
	 * refused); one request returns the whole directory. */
	ret = pfs_dav_propfind(d, path, !*path, "1", out, &self, err, errlen);
	if (ret == 0 && !self.dir) {
		pfs_rlist_free(out);
		snprintf(err, errlen, "PROPFIND /%s: not a collection", path);
		return -ENOTDIR;
	}
	if (ret)
		pfs_rlist_free(out);
	return ret;
}

static int dav_get(struct pfs_remote *r, const char *path, int fd, struct pfs_rstat *st,
		   char *err, size_t errlen)
{
	struct pfs_dav *d = (struct pfs_dav *)r;
	struct pfs_dav_req q = {.method = "GET", .path = path, .in_fd = -1, .out_fd = fd};
	struct pfs_http_resp rs;
	int ret;

	off_t start;

	memset(st, 0, sizeof(*st));
	/* For a chunked reply (no Content-Length), the size is what came. */
	start = lseek(fd, 0, SEEK_CUR);
	ret = pfs_dav_do(d, &q, &rs, err, errlen);
	if (ret)
		return ret;
	if (rs.status == 200 && !pfs_http_header(&rs, "content-length") && start >= 0) {
		off_t end = lseek(fd, 0, SEEK_CUR);

		if (end >= start)
			st->size = (uint64_t)(end - start);
	}
	ret = reply_stat(&rs, rs.status == 200, "GET", path, st, err, errlen);
	pfs_http_resp_free(&rs);
	return ret;
}

static int dav_setmeta(struct pfs_remote *r, const char *path, bool dir,
		       const struct pfs_rmeta *meta, struct pfs_rstat *out, char *err,
		       size_t errlen);

/* One PUT; its status in *status, or a transport -errno. cond: the value
 * of If-Match, "*" for If-None-Match: *, or NULL. */
static int put_once(struct pfs_remote *r, const char *path, int fd, uint64_t size,
		    const struct pfs_rmeta *meta, const char *cond, long *status, char *err,
		    size_t errlen)
{
	struct pfs_dav *d = (struct pfs_dav *)r;
	struct pfs_dav_hdrs hs = {0};
	struct pfs_dav_req q = {.method = "PUT", .path = path, .in_fd = fd, .in_len = size,
				.out_fd = -1};
	struct pfs_http_resp rs;
	char date[40];
	int ret;

	if (cond && strcmp(cond, "*") == 0)
		pfs_dav_hdr(&hs, "%s", "If-None-Match: *");
	else if (cond)
		pfs_dav_hdr(&hs, "If-Match: %s", cond);
	if (meta && (meta->has & PFS_RMETA_MTIME) && (r->caps & PFS_RCAP_MTIME_DATE)) {
		pfs_http_format_date((int64_t)meta->mtime.tv_sec, date, sizeof(date));
		pfs_dav_hdr(&hs, "Date: %s", date);
	}
	/* No 100-continue round trip: the body is sent at once. */
	pfs_dav_hdr(&hs, "%s", "Expect:");
	pfs_dav_hdr(&hs, "%s", "Content-Type: application/octet-stream");
	ret = pfs_dav_send(d, &q, &hs, &rs, err, errlen);
	if (ret == 0)
		*status = rs.status;
	pfs_http_resp_free(&rs);
	return ret;
}

/* Apache calls a file's etag weak (W/) for the second after a change,
 * and a weak etag never matches If-Match (RFC 7232: strong comparison).
 * So a 412 on the etag we were given may only mean "too recent": wait
 * until the server's etag for the file turns strong. True when it did and
 * it is still the one we hold (the PUT is then worth one more try); false
 * when it changed — a real conflict — or stayed weak. */
static bool etag_settles(struct pfs_remote *r, const char *path, const char *want)
{
	struct timespec nap = {.tv_sec = 0, .tv_nsec = 250 * 1000 * 1000};
	struct pfs_rstat st;
	char e2[256];

	for (int i = 0; i < 12; i++) {
		if (dav_stat(r, path, &st, e2, sizeof(e2)) != 0)
			return false;
		if (strncmp(st.etag, "W/", 2) != 0)
			return strcmp(st.etag, want) == 0;
		if (strcmp(st.etag + 2, want) != 0)
			return false;
		nanosleep(&nap, NULL);
	}
	return false;
}

/* Whether path's parent is missing, for a PUT refused with a status that
 * does not say (RFC 4918's 409; nginx answers 500). */
static bool parent_missing(struct pfs_dav *d, const char *path)
{
	const char *slash = strrchr(path, '/');
	struct pfs_rstat st;
	char parent[4096], e2[256];

	if (!slash)
		return false;
	snprintf(parent, sizeof(parent), "%.*s", (int)(slash - path), path);
	return pfs_dav_propfind(d, parent, true, "0", NULL, &st, e2, sizeof(e2)) == -ENOENT;
}

static int dav_put(struct pfs_remote *r, const char *path, int fd, uint64_t size,
		   const struct pfs_rmeta *meta, const char *if_match, struct pfs_rstat *out,
		   char *err, size_t errlen)
{
	struct pfs_dav *d = (struct pfs_dav *)r;
	const char *cond = if_match;
	long status = 0;
	int ret;

	/* Sent in its strong form: see etag_settles. */
	if (cond && strncmp(cond, "W/", 2) == 0)
		cond += 2;
	ret = put_once(r, path, fd, size, meta, cond, &status, err, errlen);
	if (ret)
		return ret;
	if (status == 412 && cond && strcmp(cond, "*") != 0 && etag_settles(r, path, cond)) {
		ret = put_once(r, path, fd, size, meta, cond, &status, err, errlen);
		if (ret)
			return ret;
	}
	if (status < 200 || status > 299) {
		int e = pfs_http_errno(status);

		if ((status == 409 || status >= 500) && parent_missing(d, path))
			e = -ENOENT;
		return pfs_dav_fail("PUT", path, status, e ? e : -EIO, err, errlen);
	}
	if (meta && meta->has && (r->caps & PFS_RCAP_META)) {
		ret = dav_setmeta(r, path, false, meta, out, err, errlen);
		if (ret)
			return ret;
		return 0;
	}
	if (out)
		return dav_stat(r, path, out, err, errlen);
	return 0;
}

static int dav_mkdir(struct pfs_remote *r, const char *path, const struct pfs_rmeta *meta,
		     char *err, size_t errlen)
{
	struct pfs_dav *d = (struct pfs_dav *)r;
	struct pfs_dav_req q = {.method = "MKCOL", .path = path, .dir = true, .in_fd = -1, .out_fd = -1};
	struct pfs_http_resp rs;
	struct pfs_rstat st;
	int ret;

	/* Racy (two requests), but the best such a server allows. */
	if (d->mkcol_lax) {
		ret = pfs_dav_propfind(d, path, false, "0", NULL, &st, err, errlen);
		if (ret == 0) {
			snprintf(err, errlen, "MKCOL /%s: it exists", path);
			return -EEXIST;
		}
		if (ret != -ENOENT)
			return ret;
	}
	ret = pfs_dav_do(d, &q, &rs, err, errlen);
	if (ret)
		return ret;
	if (rs.status < 200 || rs.status > 299) {
		int e = rs.status == 405   ? -EEXIST
			: rs.status == 409 ? -ENOENT
					   : pfs_http_errno(rs.status);

		ret = pfs_dav_fail("MKCOL", path, rs.status, e ? e : -EIO, err, errlen);
	}
	pfs_http_resp_free(&rs);
	if (ret == 0 && meta && meta->has && (r->caps & PFS_RCAP_META))
		ret = dav_setmeta(r, path, true, meta, NULL, err, errlen);
	return ret;
}

static int dav_remove(struct pfs_remote *r, const char *path, bool dir, const char *if_match,
		      char *err, size_t errlen)
{
	struct pfs_dav *d = (struct pfs_dav *)r;
	struct pfs_dav_hdrs hs = {0};
	struct pfs_dav_req q = {.method = "DELETE", .path = path, .dir = dir, .in_fd = -1, .out_fd = -1};
	struct pfs_http_resp rs;
	int ret;

	if (!*path) {
		snprintf(err, errlen, "DELETE /: refusing to remove the root");
		return -EBUSY;
	}
	/* DELETE of a collection removes everything in it; rmdir must not. The
	 * check and the DELETE are two requests: another client could add a
	 * name in between, which WebDAV gives no way to exclude. */
	if (dir) {
		struct pfs_rlist l = {0};

		ret = dav_list(r, path, &l, err, errlen);
		if (ret)
			return ret;
		if (l.n) {
			pfs_rlist_free(&l);
			snprintf(err, errlen, "DELETE /%s/: directory not empty", path);
			return -ENOTEMPTY;
		}
		pfs_rlist_free(&l);
	}
	if (if_match && strcmp(if_match, "*") != 0)
		pfs_dav_hdr(&hs, "If-Match: %s", if_match);
	ret = pfs_dav_send(d, &q, &hs, &rs, err, errlen);
	if (ret)
		return ret;
	if (rs.status < 200 || rs.status > 299) {
		int e = pfs_http_errno(rs.status);

		ret = pfs_dav_fail("DELETE", path, rs.status, e ? e : -EIO, err, errlen);
	}
	pfs_http_resp_free(&rs);
	return ret;
}

static int dav_move(struct pfs_remote *r, const char *from, const char *to, bool dir,
		    bool noreplace, char *err, size_t errlen)
{
	struct pfs_dav *d = (struct pfs_dav *)r;
	struct pfs_dav_hdrs hs = {0};
	struct pfs_dav_req q = {.method = "MOVE", .path = from, .dir = dir, .in_fd = -1, .out_fd = -1};
	struct pfs_http_resp rs;
	char *dest;
	int ret;

	if (!*from || !*to) {
		snprintf(err, errlen, "MOVE /%s -> /%s: the root cannot move", from, to);
		return -EBUSY;
	}
	/* Both ends of a collection's MOVE end in '/' (nginx insists). */
	dest = dav_url(d, to, dir);
	if (!dest) {
		snprintf(err, errlen, "MOVE /%s: out of memory", from);
		return -ENOMEM;
	}
	pfs_dav_hdr(&hs, "Destination: %s", dest);
	pfs_dav_hdr(&hs, "%s", noreplace ? "Overwrite: F" : "Overwrite: T");
	free(dest);
	ret = pfs_dav_send(d, &q, &hs, &rs, err, errlen);
	if (ret)
		return ret;
	if (rs.status < 200 || rs.status > 299) {
		int e = rs.status == 412 && noreplace ? -EEXIST
			: rs.status == 409	      ? -ENOENT
						      : pfs_http_errno(rs.status);

		struct pfs_rstat st;
		char e2[256];

		/* A missing source is 404 on most servers, 403 on rclone. */
		if (e != -ENOENT && e != -EEXIST &&
		    pfs_dav_propfind(d, from, dir, "0", NULL, &st, e2, sizeof(e2)) == -ENOENT)
			e = -ENOENT;
		snprintf(err, errlen, "MOVE /%s -> /%s: HTTP %ld", from, to, rs.status);
		ret = e ? e : -EIO;
	}
	pfs_http_resp_free(&rs);
	return ret;
}

static int dav_setmeta(struct pfs_remote *r, const char *path, bool dir,
		       const struct pfs_rmeta *meta, struct pfs_rstat *out, char *err,
		       size_t errlen)
{
	struct pfs_dav *d = (struct pfs_dav *)r;
	struct pfs_dav_hdrs hs = {0};
	struct pfs_dav_req q = {.method = "PROPPATCH", .path = path, .dir = dir, .in_fd = -1,
			 .out_fd = -1};
	struct pfs_http_resp rs;
	char *body;
	int ret;

	if (!(r->caps & PFS_RCAP_META)) {
		snprintf(err, errlen, "PROPPATCH /%s: the server keeps no metadata", path);
		return -EOPNOTSUPP;
	}
	body = pfs_dav_proppatch_body(meta);
	pfs_dav_hdr(&hs, "%s", "Content-Type: application/xml; charset=utf-8");
	if (!body || hs.oom) {
		free(body);
		curl_slist_free_all(hs.l);
		snprintf(err, errlen, "PROPPATCH /%s: out of memory", path);
		return -ENOMEM;
	}
	q.hdrs = hs.l;
	q.body = body;
	ret = pfs_dav_do(d, &q, &rs, err, errlen);
	curl_slist_free_all(hs.l);
	free(body);
	if (ret)
		return ret;
	if (rs.status != 207) {
		int e = pfs_http_errno(rs.status);

		ret = pfs_dav_fail("PROPPATCH", path, rs.status, e ? e : -EIO, err, errlen);
	} else {
		char why[160];

		ret = pfs_dav_parse_proppatch(rs.body, rs.len, why, sizeof(why));
		if (ret)
			snprintf(err, errlen, "PROPPATCH /%s: %s", path, why);
	}
	pfs_http_resp_free(&rs);
	if (ret == 0 && out)
		ret = dav_stat(r, path, out, err, errlen);
	return ret;
}

static void dav_close(struct pfs_remote *r)
{
	struct pfs_dav *d = (struct pfs_dav *)r;

	if (!d)
		return;
	pfs_http_free(d->h);
	free(d->base);
	free(d->rootpath);
	if (d->userpwd) {
		/* A password should not linger in freed memory. */
		memset(d->userpwd, 0, strlen(d->userpwd));
		free(d->userpwd);
	}
	free(d);
}

static const struct pfs_remote_ops dav_ops = {
	.kind = "webdav",
	.stat = dav_stat,
	.list = dav_list,
	.get = dav_get,
	.put = dav_put,
	.mkdir = dav_mkdir,
	.remove = dav_remove,
	.move = dav_move,
	.setmeta = dav_setmeta,
	.close = dav_close,
};

int pfs_dav_open(struct pfs_remote **out, const char *url, const struct pfs_remote_opts *o,
		 char *err, size_t errlen)
{
	struct pfs_dav *d = calloc(1, sizeof(*d));
	int ret;

	*out = NULL;
	if (!d) {
		snprintf(err, errlen, "webdav: out of memory");
		return -ENOMEM;
	}
	d->r.ops = &dav_ops;
	ret = pfs_dav_setup(d, url, o, err, errlen);
	if (ret) {
		dav_close(&d->r);
		return ret;
	}
	*out = &d->r;
	return 0;
}
