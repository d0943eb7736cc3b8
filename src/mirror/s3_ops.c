/* s3_ops: the changing operations of the S3 remote — put (single or
 * multipart), mkdir (a marker), remove, move (copy + delete), setmeta
 * (copy onto itself) — and the guards Ceph's RGW needs: there DELETE,
 * CopyObject and CompleteMultipartUpload ignore conditions, so those are
 * checked by a HEAD just before (see each for what that leaves). */
#include "mirror/s3_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s3_hdr(struct curl_slist **l, const char *h)
{
	struct curl_slist *n = curl_slist_append(*l, h);
	if (!n)
		return -ENOMEM;
	*l = n;
	return 0;
}

/* One call to its errno: pfs_s3_call then pfs_s3_status; rs kept for the
 * caller when rsp is given. */
static int s3_do(struct pfs_s3 *s, struct pfs_s3_call *c, struct pfs_http_resp *rsp,
		 char *err, size_t errlen)
{
	struct pfs_http_resp rs;
	int rc = pfs_s3_call(s, c, &rs, err, errlen);
	if (rc == 0)
		rc = pfs_s3_status(c, &rs, err, errlen);
	if (rsp)
		*rsp = rs;
	else
		pfs_http_resp_free(&rs);
	return rc;
}

/* if_match's condition against what is there now (HEAD): 0 when it
 * holds, -ESTALE when not. */
static int s3_check(struct pfs_s3 *s, const char *key, const char *if_match, char *err,
		    size_t errlen)
{
	struct pfs_rstat st;
	int rc = pfs_s3_head(s, key, &st, err, errlen);
	if (strcmp(if_match, "*") == 0) {
		if (rc == -ENOENT)
			return 0;
		if (rc == 0) {
			snprintf(err, errlen, "s3: %s: exists (create refused)", key);
			return -ESTALE;
		}
		return rc;
	}
	if (rc == -ENOENT || (rc == 0 && !pfs_s3_etag_eq(st.etag, if_match))) {
		snprintf(err, errlen, "s3: %s: changed on the server (etag %s, expected %s)", key,
			 rc == 0 ? st.etag : "none", if_match);
		return -ESTALE;
	}
	return rc;
}

/* *out after a write: from meta and the etag the reply gave, else a HEAD. */
static int s3_after(struct pfs_s3 *s, const char *key, uint64_t size,
		    const struct pfs_rmeta *meta, const char *etag, struct pfs_rstat *out,
		    char *err, size_t errlen)
{
	if (!out)
		return 0;
	if (!etag || !*etag || !meta || !(meta->has & PFS_RMETA_MTIME))
		return pfs_s3_head(s, key, out, err, errlen);
	memset(out, 0, sizeof(*out));
	out->size = size;
	snprintf(out->etag, sizeof(out->etag), "%s", etag);
	out->has = meta->has & (PFS_RMETA_MODE | PFS_RMETA_OWNER | PFS_RMETA_MTIME);
	out->mode = meta->mode & 07777;
	out->uid = meta->uid;
	out->gid = meta->gid;
	out->mtime = meta->mtime;
	return 0;
}

static void s3_abort(struct pfs_s3 *s, const char *key, const char *upload)
{
	struct pfs_s3_q q[] = {{"uploadId", upload}, {NULL, NULL}};
	struct pfs_s3_call c = {.method = "DELETE", .key = key, .q = q, .in_fd = -1,
				.out_fd = -1};
	char e[256];
	(void)s3_do(s, &c, NULL, e, sizeof(e));
}

/* Multipart upload of size bytes of fd: parts of s->part streamed from
 * the descriptor, aborted on any failure (no parts left behind). */
static int s3_multipart(struct pfs_s3 *s, const char *key, int fd, uint64_t size,
			const struct pfs_rmeta *meta, char *etag_out, size_t etag_len,
			char *err, size_t errlen)
{
	struct pfs_http_resp rs;
	struct pfs_s3_q qi[] = {{"uploads", ""}, {NULL, NULL}};
	struct pfs_s3_call c = {.method = "POST", .key = key, .q = qi, .body = "",
				.in_fd = -1, .out_fd = -1};
	char *upload = NULL, *xml = NULL, *etag = NULL;
	size_t xlen = 0, xcap = 0;
	int rc = pfs_s3_meta_hdrs(&c.hdrs, meta);
	if (rc < 0) {
		curl_slist_free_all(c.hdrs);
		goto nomem;
	}
	rc = s3_do(s, &c, &rs, err, errlen);
	if (rc == 0 && pfs_s3_xml_text(rs.body, rs.len, "UploadId", &upload) < 0) {
		snprintf(err, errlen, "s3: POST %s?uploads: no UploadId in the reply", key);
		rc = -EIO;
	}
	pfs_http_resp_free(&rs);
	if (rc < 0)
		return rc;

	uint64_t nparts = (size + s->part - 1) / s->part;
	xcap = 64 + nparts * 200;
	xml = malloc(xcap);
	if (!xml)
		goto nomem;
	xlen = (size_t)snprintf(xml, xcap, "<CompleteMultipartUpload>");
	for (uint64_t i = 0; i < nparts; i++) {
		char pn[24];
		snprintf(pn, sizeof(pn), "%" PRIu64, i + 1);
		struct pfs_s3_q qp[] = {{"partNumber", pn}, {"uploadId", upload}, {NULL, NULL}};
		uint64_t off = i * s->part;
		struct pfs_s3_call p = {.method = "PUT", .key = key, .q = qp, .in_fd = fd,
					.in_off = off,
					.in_len = size - off < s->part ? size - off : s->part,
					.out_fd = -1};
		rc = s3_do(s, &p, &rs, err, errlen);
		const char *et = rc == 0 ? pfs_http_header(&rs, "etag") : NULL;
		if (rc == 0 && (!et || strlen(et) > 100)) {
			snprintf(err, errlen, "s3: PUT %s part %s: no ETag in the reply", key, pn);
			rc = -EIO;
		}
		if (rc == 0)
			xlen += (size_t)snprintf(xml + xlen, xcap - xlen,
						 "<Part><PartNumber>%s</PartNumber><ETag>%s</ETag></Part>",
						 pn, et);
		pfs_http_resp_free(&rs);
		if (rc < 0)
			goto abort;
	}
	xlen += (size_t)snprintf(xml + xlen, xcap - xlen, "</CompleteMultipartUpload>");
	struct pfs_s3_q qc[] = {{"uploadId", upload}, {NULL, NULL}};
	struct pfs_s3_call cc = {.method = "POST", .key = key, .q = qc, .body = xml,
				 .bodylen = xlen, .in_fd = -1, .out_fd = -1};
	if (s3_hdr(&cc.hdrs, "Content-Type: application/xml") < 0)
		goto nomem_abort;
	rc = s3_do(s, &cc, &rs, err, errlen);
	if (rc == 0 && pfs_s3_xml_text(rs.body, rs.len, "ETag", &etag) == 0)
		snprintf(etag_out, etag_len, "%s", etag);
	pfs_http_resp_free(&rs);
	if (rc < 0)
		goto abort;
	free(etag);
	free(xml);
	free(upload);
	return 0;
nomem_abort:
	rc = -ENOMEM;
	snprintf(err, errlen, "s3: multipart %s: out of memory", key);
abort:
	s3_abort(s, key, upload);
	free(etag);
	free(xml);
	free(upload);
	return rc;
nomem:
	snprintf(err, errlen, "s3: multipart %s: out of memory", key);
	if (upload)
		s3_abort(s, key, upload);
	free(upload);
	return -ENOMEM;
}

int pfs_s3_put(struct pfs_remote *r, const char *path, int fd, uint64_t size,
	       const struct pfs_rmeta *meta, const char *if_match, struct pfs_rstat *out,
	       char *err, size_t errlen)
{
	struct pfs_s3 *s = (struct pfs_s3 *)r;
	char *key = pfs_s3_key(s, path, "");
	char etag[128] = "", h[200];
	int rc = -ENOMEM;
	if (!key)
		goto nomem;
	if (size > s->put_max) {
		/* Completion is not conditional on Ceph (it overwrites), so the
		 * condition is checked by a HEAD first. What remains: a writer
		 * that lands between this HEAD and the completion is
		 * overwritten without -ESTALE (a window of the upload's
		 * length), not detected. */
		if (if_match && (rc = s3_check(s, key, if_match, err, errlen)) < 0)
			goto out;
		rc = s3_multipart(s, key, fd, size, meta, etag, sizeof(etag), err, errlen);
		if (rc == 0)
			rc = s3_after(s, key, size, meta, etag, out, err, errlen);
		goto out;
	}
	struct pfs_s3_call c = {.method = "PUT", .key = key, .in_fd = fd, .in_off = 0,
				.in_len = size, .out_fd = -1};
	if (size == 0) {
		c.in_fd = -1;
		c.body = "";
	}
	rc = pfs_s3_meta_hdrs(&c.hdrs, meta);
	if (rc == 0 && if_match) {
		if (strcmp(if_match, "*") == 0) {
			snprintf(h, sizeof(h), "If-None-Match: *");
		} else {
			char bare[128];
			/* Ceph compares with its stored etag, which has no
			 * quotes; AWS takes both forms. */
			pfs_s3_etag_bare(if_match, bare, sizeof(bare));
			snprintf(h, sizeof(h), "If-Match: %s", bare);
		}
		rc = s3_hdr(&c.hdrs, h);
	}
	if (rc < 0) {
		curl_slist_free_all(c.hdrs);
		goto nomem;
	}
	struct pfs_http_resp rs;
	rc = s3_do(s, &c, &rs, err, errlen);
	const char *et = rc == 0 ? pfs_http_header(&rs, "etag") : NULL;
	if (et)
		snprintf(etag, sizeof(etag), "%s", et);
	pfs_http_resp_free(&rs);
	if (rc == -ENOENT && if_match && strcmp(if_match, "*") != 0)
		rc = -ESTALE; /* If-Match on a key gone since */
	if (rc == 0)
		rc = s3_after(s, key, size, meta, etag, out, err, errlen);
	goto out;
nomem:
	rc = -ENOMEM;
	snprintf(err, errlen, "s3: PUT %s: out of memory", path);
out:
	free(key);
	return rc;
}

int pfs_s3_mkdir(struct pfs_remote *r, const char *path, const struct pfs_rmeta *meta,
		 char *err, size_t errlen)
{
	struct pfs_s3 *s = (struct pfs_s3 *)r;
	struct pfs_rstat st;
	char *dkey = NULL;
	int rc = pfs_s3_stat(r, path, &st, err, errlen);
	if (rc == 0) {
		snprintf(err, errlen, "s3: mkdir %s: exists", path);
		return -EEXIST;
	}
	if (rc != -ENOENT)
		return rc;
	dkey = pfs_s3_key(s, path, "/");
	struct pfs_s3_call c = {.method = "PUT", .key = dkey, .body = "", .in_fd = -1,
				.out_fd = -1};
	if (!dkey || pfs_s3_meta_hdrs(&c.hdrs, meta) < 0 ||
	    s3_hdr(&c.hdrs, "If-None-Match: *") < 0) {
		curl_slist_free_all(c.hdrs);
		free(dkey);
		snprintf(err, errlen, "s3: mkdir %s: out of memory", path);
		return -ENOMEM;
	}
	rc = s3_do(s, &c, NULL, err, errlen);
	if (rc == -ESTALE) {
		snprintf(err, errlen, "s3: mkdir %s: exists", path);
		rc = -EEXIST;
	}
	free(dkey);
	return rc;
}

static int s3_delete(struct pfs_s3 *s, const char *key, char *err, size_t errlen)
{
	struct pfs_s3_call c = {.method = "DELETE", .key = key, .in_fd = -1, .out_fd = -1};
	return s3_do(s, &c, NULL, err, errlen);
}

int pfs_s3_remove(struct pfs_remote *r, const char *path, bool dir, const char *if_match,
		  char *err, size_t errlen)
{
	struct pfs_s3 *s = (struct pfs_s3 *)r;
	char *key = pfs_s3_key(s, path, dir ? "/" : "");
	struct pfs_rstat st;
	int rc = -ENOMEM;
	if (!key) {
		snprintf(err, errlen, "s3: remove %s: out of memory", path);
		return rc;
	}
	if (!dir) {
		/* S3's DELETE says 204 for a key that is not there, and Ceph's
		 * ignores If-Match: a HEAD tells both. What remains: a write
		 * between this HEAD and the DELETE is deleted with it. */
		rc = if_match ? s3_check(s, key, if_match, err, errlen)
			      : pfs_s3_head(s, key, &st, err, errlen);
		if (rc == 0)
			rc = s3_delete(s, key, err, errlen);
		goto out;
	}
	struct pfs_s3_page pg;
	rc = pfs_s3_list_page(s, key, NULL, 2, NULL, &pg, err, errlen);
	if (rc < 0)
		goto out;
	bool marker = false, others = pg.nprefixes > 0;
	for (size_t i = 0; i < pg.nobjs; i++) {
		if (strcmp(pg.objs[i].key, key) == 0)
			marker = true;
		else
			others = true;
	}
	pfs_s3_page_free(&pg);
	if (others) {
		snprintf(err, errlen, "s3: rmdir %s: keys remain under it", path);
		rc = -ENOTEMPTY;
	} else if (!marker) {
		snprintf(err, errlen, "s3: rmdir %s: no such directory", path);
		rc = -ENOENT;
	} else {
		rc = s3_delete(s, key, err, errlen);
	}
out:
	free(key);
	return rc;
}

/* CopyObject from key to key2 (the metadata copied with it). */
static int s3_copy(struct pfs_s3 *s, const char *from, const char *to,
		   const struct pfs_rmeta *replace, char *err, size_t errlen)
{
	char *esc = pfs_http_escape_path(from), *h = NULL;
	struct pfs_s3_call c = {.method = "PUT", .key = to, .body = "", .in_fd = -1,
				.out_fd = -1};
	int rc = -ENOMEM;
	if (!esc || asprintf(&h, "x-amz-copy-source: /%s/%s", s->bucket, esc) < 0) {
		h = NULL;
		goto nomem;
	}
	if (s3_hdr(&c.hdrs, h) < 0)
		goto nomem;
	if (replace && (s3_hdr(&c.hdrs, "x-amz-metadata-directive: REPLACE") < 0 ||
			pfs_s3_meta_hdrs(&c.hdrs, replace) < 0))
		goto nomem;
	rc = s3_do(s, &c, NULL, err, errlen);
	goto out;
nomem:
	curl_slist_free_all(c.hdrs);
	snprintf(err, errlen, "s3: copy %s: out of memory", from);
out:
	free(esc);
	free(h);
	return rc;
}

int pfs_s3_move(struct pfs_remote *r, const char *from, const char *to, bool dir,
		bool noreplace, char *err, size_t errlen)
{
	struct pfs_s3 *s = (struct pfs_s3 *)r;
	struct pfs_rstat st;
	char *fk = NULL, *tk = NULL, *token = NULL, *dst = NULL;
	int rc;
	if (noreplace) {
		/* Not atomic on S3 (CopyObject takes no destination condition
		 * on Ceph): a name taken between here and the copy is
		 * replaced. */
		rc = pfs_s3_stat(r, to, &st, err, errlen);
		if (rc == 0) {
			snprintf(err, errlen, "s3: move %s to %s: the target exists", from, to);
			return -EEXIST;
		}
		if (rc != -ENOENT)
			return rc;
	}
	rc = -ENOMEM;
	fk = pfs_s3_key(s, from, dir ? "/" : "");
	tk = pfs_s3_key(s, to, dir ? "/" : "");
	if (!fk || !tk)
		goto nomem;
	if (!dir) {
		rc = pfs_s3_head(s, fk, &st, err, errlen);
		if (rc == 0)
			rc = s3_copy(s, fk, tk, NULL, err, errlen);
		if (rc == 0)
			rc = s3_delete(s, fk, err, errlen);
		goto out;
	}
	/* Every key under the prefix, page by page: a page's keys copied,
	 * then deleted. Stopped half way, both prefixes hold part of the
	 * tree and a retry finishes it (copies are idempotent). */
	size_t fl = strlen(fk);
	bool any = false;
	for (;;) {
		struct pfs_s3_page pg;
		rc = pfs_s3_list_page(s, fk, NULL, s->max_keys, token, &pg, err, errlen);
		if (rc < 0)
			goto out;
		for (size_t i = 0; i < pg.nobjs && rc == 0; i++) {
			free(dst);
			dst = NULL;
			if (asprintf(&dst, "%s%s", tk, pg.objs[i].key + fl) < 0) {
				dst = NULL;
				rc = -ENOMEM;
				break;
			}
			rc = s3_copy(s, pg.objs[i].key, dst, NULL, err, errlen);
		}
		for (size_t i = 0; i < pg.nobjs && rc == 0; i++)
			rc = s3_delete(s, pg.objs[i].key, err, errlen);
		any = any || pg.nobjs > 0;
		free(token);
		token = pg.truncated && pg.next_token ? strdup(pg.next_token) : NULL;
		bool more = pg.truncated && pg.next_token;
		pfs_s3_page_free(&pg);
		if (rc < 0)
			goto out;
		if (!more)
			break;
		if (!token)
			goto nomem;
	}
	rc = 0;
	if (!any) {
		snprintf(err, errlen, "s3: move %s: no such directory", from);
		rc = -ENOENT;
	}
	goto out;
nomem:
	rc = -ENOMEM;
	snprintf(err, errlen, "s3: move %s: out of memory", from);
out:
	free(fk);
	free(tk);
	free(token);
	free(dst);
	return rc;
}

int pfs_s3_setmeta(struct pfs_remote *r, const char *path, bool dir,
		   const struct pfs_rmeta *meta, struct pfs_rstat *out, char *err,
		   size_t errlen)
{
	struct pfs_s3 *s = (struct pfs_s3 *)r;
	char *key = pfs_s3_key(s, path, dir ? "/" : "");
	struct pfs_rstat st;
	int rc = -ENOMEM;
	if (!key) {
		snprintf(err, errlen, "s3: setmeta %s: out of memory", path);
		return rc;
	}
	rc = pfs_s3_head(s, key, &st, err, errlen);
	if (rc == -ENOENT && dir && (rc = pfs_s3_stat(r, path, &st, err, errlen)) == 0) {
		/* An implicit directory (keys, no marker): give it one. */
		struct pfs_s3_call c = {.method = "PUT", .key = key, .body = "", .in_fd = -1,
					.out_fd = -1};
		rc = pfs_s3_meta_hdrs(&c.hdrs, meta);
		rc = rc ? rc : s3_do(s, &c, NULL, err, errlen);
		goto after;
	}
	if (rc < 0)
		goto out;
	/* REPLACE sets the whole metadata: keep the fields not given. */
	struct pfs_rmeta m = {.has = st.has, .mode = st.mode, .uid = st.uid, .gid = st.gid,
			      .mtime = st.mtime};
	if (meta->has & PFS_RMETA_MODE)
		m.mode = meta->mode;
	if (meta->has & PFS_RMETA_OWNER) {
		m.uid = meta->uid;
		m.gid = meta->gid;
	}
	if (meta->has & PFS_RMETA_MTIME)
		m.mtime = meta->mtime;
	m.has |= meta->has;
	rc = s3_copy(s, key, key, &m, err, errlen);
after:
	if (rc == 0 && out)
		rc = pfs_s3_head(s, key, out, err, errlen);
	if (rc == 0 && out)
		out->dir = dir;
out:
	free(key);
	return rc;
}
