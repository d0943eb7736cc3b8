/* libFuzzer target: pfs_map_parse on arbitrary bytes, then resolve,
 * children and diff on paths taken from the keys, checking that the
 * answers agree with each other. */
#include "map/mapping.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                     \
	do {                                                                         \
		if (!(c)) {                                                          \
			fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); \
			abort();                                                     \
		}                                                                    \
	} while (0)

/* Enough paths to exercise the table without letting one input take long. */
#define MAX_KEYS 32

struct keys {
	char *v[MAX_KEYS];
	size_t n, total;
};

static int collect(const char *key, void *arg)
{
	struct keys *k = arg;

	CHECK(key && key[0] == '/');
	if (k->n < MAX_KEYS) {
		k->v[k->n] = strdup(key);
		CHECK(k->v[k->n]);
		k->n++;
	}
	k->total++;
	return 0;
}

static int count_key(const char *key, void *arg)
{
	(void)key;
	(*(size_t *)arg)++;
	return 0;
}

struct kids {
	const char *dir;
	char prev[256];
	bool any;
	const char *want; /* a name that must be listed, or NULL */
	bool found;
};

static int on_child(const char *name, bool hidden, const struct pfs_map_entry *e, void *arg)
{
	struct kids *k = arg;
	size_t dl = strlen(k->dir);

	CHECK(name[0] && !strchr(name, '/') && strlen(name) <= 255);
	CHECK(!k->any || strcmp(k->prev, name) < 0);
	snprintf(k->prev, sizeof(k->prev), "%s", name);
	k->any = true;
	if (e) {
		CHECK(hidden == !e->target);
		/* The entry's key is dir/name. */
		CHECK(strncmp(e->key, k->dir, dl) == 0);
		CHECK(strcmp(e->key + dl + (dl > 1), name) == 0);
	} else {
		CHECK(!hidden);
	}
	if (k->want && strcmp(k->want, name) == 0)
		k->found = true;
	return 0;
}

static void check_children(const struct pfs_map *m, const char *dir, const char *want)
{
	struct kids k = {.dir = dir, .want = want};

	CHECK(pfs_map_children(m, dir, on_child, &k) == 0);
	CHECK(!want || k.found);
}

static void check_key(const struct pfs_map *m, const char *key)
{
	size_t kl = strlen(key);
	char *path = malloc(kl + 8);
	const char *slash = strrchr(key, '/');
	struct pfs_map_res r;

	CHECK(path);
	pfs_map_resolve(m, key, &r);
	CHECK(r.entry);
	CHECK(r.rest >= key && r.rest <= key + kl);
	if (r.hidden) {
		CHECK(!r.entry->target);
		CHECK(strncmp(r.entry->key, key, strlen(r.entry->key)) == 0);
	} else {
		CHECK(r.exact && strcmp(r.entry->key, key) == 0 && r.entry->target && !*r.rest);
	}
	CHECK(!r.exact || strcmp(r.entry->key, key) == 0);
	CHECK(!r.entry->readonly || r.readonly);

	/* Beneath a key: grafted or hidden, never exact. */
	snprintf(path, kl + 8, "%s/x", kl > 1 ? key : "");
	pfs_map_resolve(m, path, &r);
	CHECK(r.entry && r.rest >= path && r.rest <= path + strlen(path));
	if (!r.hidden && !r.exact) {
		size_t el = strlen(r.entry->key);

		CHECK(strncmp(r.entry->key, path, el) == 0);
		CHECK(r.rest == path + el + (el > 1));
		CHECK(r.entry->target);
	}
	check_children(m, key, NULL);

	/* Its parent lists it and has a key beneath it. */
	if (kl > 1) {
		size_t pl = slash == key ? 1 : (size_t)(slash - key);

		memcpy(path, key, pl);
		path[pl] = '\0';
		pfs_map_resolve(m, path, &r);
		CHECK(r.parent_of_keys);
		check_children(m, path, slash + 1);
	}
	free(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[PFS_MAP_ERRLEN];
	struct pfs_map *m = NULL, *again = NULL, *empty = NULL;
	struct keys k = {0};
	size_t n = 0;
	int rc = pfs_map_parse((const char *)data, size, &m, err);

	if (rc < 0) {
		CHECK(!m && (rc == -EINVAL || rc == -ENOMEM));
		CHECK(err[0] && strlen(err) < PFS_MAP_ERRLEN && !strchr(err, '\n'));
		return 0;
	}
	CHECK(rc == 0 && m && !err[0]);
	CHECK(pfs_map_parse("{}", 2, &empty, err) == 0);

	CHECK(pfs_map_diff(NULL, m, collect, &k) == 0);
	CHECK(k.total == pfs_map_count(m));
	CHECK(pfs_map_diff(m, empty, count_key, &n) == 0 && n == pfs_map_count(m));
	n = 0;
	CHECK(pfs_map_diff(m, m, count_key, &n) == 0 && n == 0);
	/* The same bytes give the same table. */
	CHECK(pfs_map_parse((const char *)data, size, &again, err) == 0);
	CHECK(pfs_map_diff(m, again, count_key, &n) == 0 && n == 0);

	check_children(m, "/", NULL);
	for (size_t i = 0; i < k.n; i++) {
		check_key(m, k.v[i]);
		CHECK(pfs_map_hash(k.v[i]) != 0);
		free(k.v[i]);
	}
	pfs_map_unref(pfs_map_ref(m));
	pfs_map_unref(again);
	pfs_map_unref(empty);
	pfs_map_unref(m);
	return 0;
}
