/* s3_xml: S3's XML replies (ListObjectsV2, multipart, errors) read with
 * libxml2 — no entity or network loading, the reply stays in memory (the
 * caller capped it). */
#include "mirror/s3_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

static xmlDocPtr s3x_read(const char *body, size_t len)
{
	if (!body || len == 0 || len > INT32_MAX)
		return NULL;
	return xmlReadMemory(body, (int)len, "s3.xml", NULL,
			     XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

static bool s3x_is(xmlNodePtr n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

/* A child element's text (malloc'ed by libxml2), NULL when absent. */
static char *s3x_child(xmlNodePtr n, const char *name)
{
	for (xmlNodePtr c = n->children; c; c = c->next)
		if (s3x_is(c, name))
			return (char *)xmlNodeGetContent(c);
	return NULL;
}

int pfs_s3_parse_iso(const char *s, struct timespec *ts)
{
	struct tm tm = {0};
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end)
		return -EINVAL;
	ts->tv_sec = timegm(&tm);
	ts->tv_nsec = 0;
	if (*end == '.') {
		long ns = 0;
		int digits = 0;
		for (end++; *end >= '0' && *end <= '9'; end++)
			if (digits < 9) {
				ns = ns * 10 + (*end - '0');
				digits++;
			}
		while (digits++ < 9)
			ns *= 10;
		ts->tv_nsec = ns;
	}
	return 0;
}

static int s3x_add_obj(struct pfs_s3_page *pg, xmlNodePtr c)
{
	char *key = s3x_child(c, "Key");
	char *size = s3x_child(c, "Size");
	char *etag = s3x_child(c, "ETag");
	char *lm = s3x_child(c, "LastModified");
	int rc = -EIO;
	if (!key)
		goto out;
	if (pg->nobjs == pg->capobjs) {
		size_t cap = pg->capobjs ? pg->capobjs * 2 : 64;
		struct pfs_s3_obj *v = realloc(pg->objs, cap * sizeof(*v));
		rc = -ENOMEM;
		if (!v)
			goto out;
		pg->objs = v;
		pg->capobjs = cap;
	}
	struct pfs_s3_obj *o = &pg->objs[pg->nobjs];
	memset(o, 0, sizeof(*o));
	o->key = strdup(key);
	rc = -ENOMEM;
	if (!o->key)
		goto out;
	o->size = size ? strtoull(size, NULL, 10) : 0;
	if (etag)
		snprintf(o->etag, sizeof(o->etag), "%s", etag);
	if (lm)
		(void)pfs_s3_parse_iso(lm, &o->mtime);
	pg->nobjs++;
	rc = 0;
out:
	xmlFree(key);
	xmlFree(size);
	xmlFree(etag);
	xmlFree(lm);
	return rc;
}

static int s3x_add_prefix(struct pfs_s3_page *pg, xmlNodePtr c)
{
	char *p = s3x_child(c, "Prefix");
	int rc = -EIO;
	if (!p)
		return rc;
	rc = -ENOMEM;
	if (pg->nprefixes == pg->capprefixes) {
		size_t cap = pg->capprefixes ? pg->capprefixes * 2 : 16;
		char **v = realloc(pg->prefixes, cap * sizeof(*v));
		if (!v)
			goto out;
		pg->prefixes = v;
		pg->capprefixes = cap;
	}
	pg->prefixes[pg->nprefixes] = strdup(p);
	if (pg->prefixes[pg->nprefixes]) {
		pg->nprefixes++;
		rc = 0;
	}
out:
	xmlFree(p);
	return rc;
}

int pfs_s3_parse_list(const char *body, size_t len, struct pfs_s3_page *pg)
{
	memset(pg, 0, sizeof(*pg));
	xmlDocPtr doc = s3x_read(body, len);
	if (!doc)
		return -EIO;
	int rc = -EIO;
	xmlNodePtr root = xmlDocGetRootElement(doc);
	if (!root || !s3x_is(root, "ListBucketResult"))
		goto out;
	rc = 0;
	for (xmlNodePtr c = root->children; c && rc == 0; c = c->next) {
		if (s3x_is(c, "Contents")) {
			rc = s3x_add_obj(pg, c);
		} else if (s3x_is(c, "CommonPrefixes")) {
			rc = s3x_add_prefix(pg, c);
		} else if (s3x_is(c, "IsTruncated")) {
			char *t = (char *)xmlNodeGetContent(c);
			pg->truncated = t && strcmp(t, "true") == 0;
			xmlFree(t);
		} else if (s3x_is(c, "NextContinuationToken")) {
			char *t = (char *)xmlNodeGetContent(c);
			if (t && *t) {
				free(pg->next_token);
				pg->next_token = strdup(t);
				if (!pg->next_token)
					rc = -ENOMEM;
			}
			xmlFree(t);
		}
	}
out:
	xmlFreeDoc(doc);
	if (rc < 0)
		pfs_s3_page_free(pg);
	return rc;
}

void pfs_s3_page_free(struct pfs_s3_page *pg)
{
	for (size_t i = 0; i < pg->nobjs; i++)
		free(pg->objs[i].key);
	for (size_t i = 0; i < pg->nprefixes; i++)
		free(pg->prefixes[i]);
	free(pg->objs);
	free(pg->prefixes);
	free(pg->next_token);
	memset(pg, 0, sizeof(*pg));
}

static xmlNodePtr s3x_find(xmlNodePtr n, const char *name)
{
	for (; n; n = n->next) {
		if (s3x_is(n, name))
			return n;
		xmlNodePtr f = s3x_find(n->children, name);
		if (f)
			return f;
	}
	return NULL;
}

int pfs_s3_xml_text(const char *body, size_t len, const char *name, char **out)
{
	*out = NULL;
	xmlDocPtr doc = s3x_read(body, len);
	if (!doc)
		return -EIO;
	int rc = -ENOENT;
	xmlNodePtr n = s3x_find(xmlDocGetRootElement(doc), name);
	if (n) {
		char *t = (char *)xmlNodeGetContent(n);
		*out = strdup(t ? t : "");
		xmlFree(t);
		rc = *out ? 0 : -ENOMEM;
	}
	xmlFreeDoc(doc);
	return rc;
}
