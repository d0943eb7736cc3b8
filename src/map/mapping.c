#include "map/mapping.h"

#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PATH_MAX and NAME_MAX less the terminator: longer paths would fail at the
 * first syscall anyway, so refuse them while the writer can still be told. */
#define KEY_MAX 4095
#define COMP_MAX 255
#define TARGET_MAX 4095
#define ID_MAX 4294967294LL /* (uid_t)-1 means "no change" to chown */
/* Room for the reason after a quoted key in a PFS_MAP_ERRLEN line. */
#define QUOTE_MAX 120

struct node {
	struct node **kids; /* strcmp order of name */
	size_t nkids, kcap;
	const struct pfs_map_entry *entry; /* NULL: only a parent of deeper keys */
	size_t nlen;
	char name[];
};

struct pfs_map {
	atomic_size_t refs;
	size_t n;
	/* Component order (see key_cmp): parents before their subtrees and
	 * siblings in strcmp order, which lets the trie be built by appending
	 * and lets diff merge two tables in one pass. */
	struct pfs_map_entry *ents;
	struct node *root;
};

/* '/' ranks below every other byte so a key sorts right before its
 * subtree: "/a" < "/a/b" < "/a-b", whereas strcmp puts "/a-b" first. */
static int rank(char c)
{
	return c == '\0' ? 0 : c == '/' ? 1 : (unsigned char)c + 1;
}

static int key_cmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		int ra = rank(*a), rb = rank(*b);

		if (ra != rb)
			return ra < rb ? -1 : 1;
		if (!*a)
			return 0;
	}
}

static int ent_cmp(const void *a, const void *b)
{
	return key_cmp(((const struct pfs_map_entry *)a)->key,
		       ((const struct pfs_map_entry *)b)->key);
}

/* Quote s for a one-line message: control bytes escaped, long keys cut at a
 * UTF-8 boundary so the reason after them always fits. */
static void quote(char *dst, size_t cap, const char *s, size_t n)
{
	size_t o = 0, budget = cap - 4; /* room for "...\0" */

	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t seq = c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
		size_t w;

		if (seq > n - i)
			seq = n - i;
		w = (c < 0x20 || c == 0x7f) ? 4 : (c == '"' || c == '\\') ? 2 : seq;
		if (o + w > budget) {
			memcpy(dst + o, "...", 3);
			o += 3;
			break;
		}
		if (c < 0x20 || c == 0x7f)
			snprintf(dst + o, 5, "\\x%02x", c);
		else if (c == '"' || c == '\\')
			memcpy(dst + o, (const char[]){'\\', (char)c}, 2);
		else
			memcpy(dst + o, s + i, seq);
		o += w;
		i += seq;
	}
	dst[o] = '\0';
}

static int bad(char *err, const char *key, size_t klen, const char *reason)
{
	char q[QUOTE_MAX];

	quote(q, sizeof(q), key, klen);
	snprintf(err, PFS_MAP_ERRLEN, "key \"%s\": %s", q, reason);
	return -EINVAL;
}

static const char *key_problem(const char *k, size_t n)
{
	const char *c, *end = k + n;

	if (n == 0 || k[0] != '/')
		return "not absolute";
	if (n > KEY_MAX)
		return "longer than 4095 bytes";
	if (n == 1)
		return NULL;
	if (k[n - 1] == '/')
		return "trailing slash";
	for (c = k + 1; c < end;) {
		const char *e = memchr(c, '/', (size_t)(end - c));
		size_t cl;

		if (!e)
			e = end;
		cl = (size_t)(e - c);
		if (cl == 0)
			return "empty component";
		if (cl == 1 && c[0] == '.')
			return "\".\" component";
		if (cl == 2 && c[0] == '.' && c[1] == '.')
			return "\"..\" component";
		if (cl > COMP_MAX)
			return "component longer than 255 bytes";
		c = e + 1;
	}
	return NULL;
}

static bool has_dotdot(const char *s, size_t n)
{
	const char *c = s, *end = s + n;

	while (c < end) {
		const char *e = memchr(c, '/', (size_t)(end - c));

		if (!e)
			e = end;
		if (e - c == 2 && c[0] == '.' && c[1] == '.')
			return true;
		c = e + 1;
	}
	return false;
}

static bool parse_mode(json_t *v, mode_t *out)
{
	unsigned long m = 0;

	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);

		if (i < 0 || i > 07777)
			return false;
		*out = (mode_t)i;
		return true;
	}
	if (!json_is_string(v) || json_string_length(v) == 0)
		return false;
	/* Octal digits only: "0o644" or " 644" would be read differently by
	 * different writers' tools, so refuse rather than guess. */
	for (size_t i = 0; i < json_string_length(v); i++) {
		char c = json_string_value(v)[i];

		if (c < '0' || c > '7')
			return false;
		m = m * 8 + (unsigned long)(c - '0');
		if (m > 07777)
			return false;
	}
	*out = (mode_t)m;
	return true;
}

static bool parse_id(json_t *v, unsigned *out)
{
	json_int_t i;

	if (!json_is_integer(v))
		return false;
	i = json_integer_value(v);
	if (i < 0 || i > ID_MAX)
		return false;
	*out = (unsigned)i;
	return true;
}

static int parse_value(struct pfs_map_entry *e, const char *key, size_t klen, json_t *v,
		       char *err)
{
	json_t *f;
	unsigned id;

	if (!json_is_object(v))
		return bad(err, key, klen, "value is not an object");
	f = json_object_get(v, "path");
	if (f) {
		if (!json_is_string(f))
			return bad(err, key, klen, "\"path\" must be a string");
		if (json_string_length(f) != klen || memcmp(json_string_value(f), key, klen) != 0)
			return bad(err, key, klen, "\"path\" differs from the key");
	}
	f = json_object_get(v, "target");
	if (f) {
		const char *t = json_string_value(f);
		size_t tl = json_string_length(f);

		if (!json_is_string(f))
			return bad(err, key, klen, "\"target\" must be a string");
		if (tl == 0)
			return bad(err, key, klen, "\"target\" is empty");
		if (memchr(t, '\0', tl))
			return bad(err, key, klen, "\"target\" contains a NUL byte");
		if (tl > TARGET_MAX)
			return bad(err, key, klen, "\"target\" longer than 4095 bytes");
		if (t[0] != '/' && has_dotdot(t, tl))
			return bad(err, key, klen, "\"target\" \"..\" escapes the source");
		e->target = strdup(t);
		if (!e->target)
			return -ENOMEM;
	}
	f = json_object_get(v, "mode");
	if (f) {
		if (!parse_mode(f, &e->mode))
			return bad(err, key, klen,
				   "\"mode\" must be an octal string or an integer 0..07777");
		e->has_mode = true;
	}
	f = json_object_get(v, "uid");
	if (f) {
		if (!parse_id(f, &id))
			return bad(err, key, klen, "\"uid\" must be an integer 0..4294967294");
		e->uid = (uid_t)id;
		e->has_uid = true;
	}
	f = json_object_get(v, "gid");
	if (f) {
		if (!parse_id(f, &id))
			return bad(err, key, klen, "\"gid\" must be an integer 0..4294967294");
		e->gid = (gid_t)id;
		e->has_gid = true;
	}
	f = json_object_get(v, "readonly");
	if (f) {
		if (!json_is_boolean(f))
			return bad(err, key, klen, "\"readonly\" must be a boolean");
		e->readonly = json_is_true(f);
	}
	return 0;
}

static struct node *node_new(const char *name, size_t len)
{
	struct node *n = calloc(1, sizeof(*n) + len + 1);

	if (!n)
		return NULL;
	memcpy(n->name, name, len);
	n->nlen = len;
	return n;
}

static void node_free(struct node *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n);
}

/* Entries arrive in component order, so a new child always sorts after the
 * children already there: only the last one can be the same name. */
static int trie_add(struct node *root, const struct pfs_map_entry *e)
{
	struct node *n = root;
	const char *c = e->key + 1;

	while (*c) {
		const char *end = strchrnul(c, '/');
		size_t len = (size_t)(end - c);
		struct node *last = n->nkids ? n->kids[n->nkids - 1] : NULL;

		if (!last || last->nlen != len || memcmp(last->name, c, len) != 0) {
			if (n->nkids == n->kcap) {
				size_t cap = n->kcap ? n->kcap * 2 : 4;
				struct node **k = realloc(n->kids, cap * sizeof(*k));

				if (!k)
					return -ENOMEM;
				n->kids = k;
				n->kcap = cap;
			}
			last = node_new(c, len);
			if (!last)
				return -ENOMEM;
			n->kids[n->nkids++] = last;
		}
		n = last;
		c = *end ? end + 1 : end;
	}
	n->entry = e;
	return 0;
}

static const struct node *find_kid(const struct node *n, const char *c, size_t len)
{
	size_t lo = 0, hi = n->nkids;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct node *k = n->kids[mid];
		int r = memcmp(k->name, c, k->nlen < len ? k->nlen : len);

		if (r == 0)
			r = k->nlen < len ? -1 : k->nlen > len ? 1 : 0;
		if (r == 0)
			return k;
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Tolerates repeated and trailing slashes: a caller's unnormalised path
 * must not walk off into memory, only fail to match. */
static const struct node *find_node(const struct pfs_map *m, const char *path)
{
	const struct node *n;
	const char *c = path;

	if (!m || !path || path[0] != '/')
		return NULL;
	n = m->root;
	for (;;) {
		const char *end;

		while (*c == '/')
			c++;
		if (!*c)
			return n;
		end = strchrnul(c, '/');
		n = find_kid(n, c, (size_t)(end - c));
		if (!n)
			return NULL;
		c = end;
	}
}

static void map_free(struct pfs_map *m)
{
	if (!m)
		return;
	node_free(m->root);
	for (size_t i = 0; m->ents && i < m->n; i++) {
		free((char *)m->ents[i].key);
		free((char *)m->ents[i].target);
	}
	free(m->ents);
	free(m);
}

static void syntax_err(char *err, const json_error_t *je)
{
	char text[sizeof(je->text)];

	/* jansson quotes the offending token, which may hold control bytes. */
	snprintf(text, sizeof(text), "%s", je->text);
	for (char *p = text; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	snprintf(err, PFS_MAP_ERRLEN, "line %d, column %d: %s", je->line, je->column, text);
}

int pfs_map_parse(const char *json, size_t len, struct pfs_map **out, char err[PFS_MAP_ERRLEN])
{
	char scratch[PFS_MAP_ERRLEN];
	struct pfs_map *m = NULL;
	json_error_t je;
	json_t *root;
	void *it;
	int rc;

	if (!err)
		err = scratch;
	err[0] = '\0';
	*out = NULL;
	if (!json) {
		json = "";
		len = 0;
	}
	/* Duplicates are refused because jansson would silently keep the last,
	 * hiding a writer's mistake. NUL is allowed only so that a target
	 * holding one gets a clear reason; jansson still refuses it in keys.
	 * Any top-level value parses so that "null" gets our own message. */
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY, &je);
	if (!root) {
		if (json_error_code(&je) == json_error_out_of_memory) {
			snprintf(err, PFS_MAP_ERRLEN, "out of memory");
			return -ENOMEM;
		}
		syntax_err(err, &je);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		snprintf(err, PFS_MAP_ERRLEN, "top level: not an object");
		rc = -EINVAL;
		goto out;
	}
	rc = -ENOMEM;
	m = calloc(1, sizeof(*m));
	if (!m)
		goto out;
	m->ents = calloc(json_object_size(root) + 1, sizeof(*m->ents));
	m->root = node_new("", 0);
	if (!m->ents || !m->root)
		goto out;
	for (it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
		const char *key = json_object_iter_key(it);
		size_t klen = strlen(key); /* jansson refuses NUL in keys */
		struct pfs_map_entry *e = &m->ents[m->n];
		const char *why = key_problem(key, klen);

		if (why) {
			rc = bad(err, key, klen, why);
			goto out;
		}
		e->key = strdup(key);
		m->n++; /* counted now so map_free releases what parse_value got */
		if (!e->key) {
			rc = -ENOMEM;
			goto out;
		}
		rc = parse_value(e, key, klen, json_object_iter_value(it), err);
		if (rc < 0)
			goto out;
	}
	qsort(m->ents, m->n, sizeof(*m->ents), ent_cmp);
	for (size_t i = 0; i < m->n; i++) {
		rc = trie_add(m->root, &m->ents[i]);
		if (rc < 0)
			goto out;
	}
	atomic_init(&m->refs, 1);
	*out = m;
	m = NULL;
	rc = 0;
out:
	if (rc == -ENOMEM && !err[0])
		snprintf(err, PFS_MAP_ERRLEN, "out of memory");
	map_free(m);
	json_decref(root);
	return rc;
}

struct pfs_map *pfs_map_ref(struct pfs_map *m)
{
	if (m)
		atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	return m;
}

void pfs_map_unref(struct pfs_map *m)
{
	/* acq_rel: the last holder must see every other holder's reads done. */
	if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
		map_free(m);
}

size_t pfs_map_count(const struct pfs_map *m)
{
	return m ? m->n : 0;
}

const struct pfs_map_entry *pfs_map_entries(const struct pfs_map *m, size_t *n)
{
	*n = m ? m->n : 0;
	return m ? m->ents : NULL;
}

void pfs_map_resolve(const struct pfs_map *m, const char *path, struct pfs_map_res *r)
{
	const struct pfs_map_entry *hider = NULL, *graft = NULL;
	const char *hider_end = NULL, *graft_end = NULL;
	const struct node *n;
	const char *c;

	memset(r, 0, sizeof(*r));
	if (!path)
		path = "";
	r->rest = path + strlen(path); /* never NULL, even when unmapped */
	if (!m || path[0] != '/')
		return;
	n = m->root;
	c = path;
	/* c always points just past the components matched so far. */
	while (n) {
		const struct pfs_map_entry *e = n->entry;
		const char *end;

		if (e) {
			r->readonly |= e->readonly;
			if (!e->target && !hider) {
				hider = e;
				hider_end = c;
			} else if (e->target && !hider) {
				graft = e;
				graft_end = c;
			}
		}
		while (*c == '/')
			c++;
		if (!*c)
			break;
		end = strchrnul(c, '/');
		n = find_kid(n, c, (size_t)(end - c));
		c = end;
	}
	if (n)
		r->parent_of_keys = n->nkids > 0;
	if (hider) {
		r->hidden = true;
		r->entry = hider;
		c = hider_end;
	} else if (graft) {
		r->entry = graft;
		c = graft_end;
	} else {
		return;
	}
	r->exact = n && n->entry == r->entry;
	while (*c == '/')
		c++;
	r->rest = c;
}

int pfs_map_children(const struct pfs_map *m, const char *dir, pfs_map_child_fn fn, void *arg)
{
	const struct node *n = find_node(m, dir);

	for (size_t i = 0; n && i < n->nkids; i++) {
		const struct node *k = n->kids[i];
		int rc = fn(k->name, k->entry && !k->entry->target, k->entry, arg);

		if (rc)
			return rc;
	}
	return 0;
}

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static bool entry_eq(const struct pfs_map_entry *a, const struct pfs_map_entry *b)
{
	return str_eq(a->target, b->target) && a->readonly == b->readonly &&
	       a->has_mode == b->has_mode && (!a->has_mode || a->mode == b->mode) &&
	       a->has_uid == b->has_uid && (!a->has_uid || a->uid == b->uid) &&
	       a->has_gid == b->has_gid && (!a->has_gid || a->gid == b->gid);
}

int pfs_map_diff(const struct pfs_map *a, const struct pfs_map *b,
		 int (*fn)(const char *key, void *arg), void *arg)
{
	size_t i = 0, j = 0, na = pfs_map_count(a), nb = pfs_map_count(b);

	if (a == b)
		return 0;
	/* Both arrays are in component order: one merge pass, parents first. */
	while (i < na || j < nb) {
		const char *key;
		int c, rc;

		if (i == na)
			c = 1;
		else if (j == nb)
			c = -1;
		else
			c = key_cmp(a->ents[i].key, b->ents[j].key);
		if (c < 0) {
			key = a->ents[i++].key;
		} else if (c > 0) {
			key = b->ents[j++].key;
		} else {
			bool same = entry_eq(&a->ents[i], &b->ents[j]);

			key = a->ents[i].key;
			i++;
			j++;
			if (same)
				continue;
		}
		rc = fn(key, arg);
		if (rc)
			return rc;
	}
	return 0;
}

static bool has_component(const char *path, const char *name, size_t nl)
{
	for (const char *p = strstr(path, name); p; p = strstr(p + 1, name))
		if ((p == path || p[-1] == '/') && (p[nl] == '/' || p[nl] == '\0'))
			return true;
	return false;
}

int pfs_map_targets_through(const struct pfs_map *m, const char *name,
			    int (*fn)(const struct pfs_map_entry *e, void *arg), void *arg)
{
	size_t nl = name ? strlen(name) : 0;

	/* A scan, no index: it runs once per name a request changes, and a
	 * strstr per entry costs less than the syscalls of that request. */
	for (size_t i = 0; i < pfs_map_count(m); i++) {
		const struct pfs_map_entry *e = &m->ents[i];
		int rc;

		if (!e->target || (name && (!nl || !has_component(e->target, name, nl))))
			continue;
		rc = fn(e, arg);
		if (rc)
			return rc;
	}
	return 0;
}

uint64_t pfs_map_hash(const char *s)
{
	uint64_t h = 14695981039346656037ull;

	for (; s && *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	/* 0 is left free for callers to mean "no hash yet". */
	return h ? h : 1;
}
