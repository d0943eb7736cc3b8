/* mount_overlay: the prismfs C API in one program.
 *
 *   mount_overlay SOURCE UPPER MOUNTPOINT preserve|discard|commit|commit-atomic [FILE]
 *
 * Mounts SOURCE at MOUNTPOINT with UPPER as a copy-on-write layer (UPPER
 * "-": a plain mirror, no upper), writes FILE (default hello.txt) through
 * the mount, prints the mount point, then unmounts with the action given:
 * preserve leaves the new file in UPPER, discard throws it away, commit
 * puts it into SOURCE.
 *
 * Build: cc mount_overlay.c $(pkg-config --cflags --libs prismfs) */
#include <prismfs.h>

#include <stdio.h>
#include <string.h>

static int parse_action(const char *s, enum prismfs_action *a)
{
	static const struct { const char *name; enum prismfs_action a; } names[] = {
		{"preserve", PRISMFS_PRESERVE}, {"discard", PRISMFS_DISCARD},
		{"commit", PRISMFS_COMMIT}, {"commit-atomic", PRISMFS_COMMIT_ATOMIC},
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i].name) == 0) {
			*a = names[i].a;
			return 0;
		}
	}
	return -1;
}

int main(int argc, char **argv)
{
	const char *file = argc > 5 ? argv[5] : "hello.txt";
	enum prismfs_action action;
	prismfs_config *cfg;
	prismfs_mount_t *m = NULL;
	char path[4096];
	FILE *f;
	int r, ok;

	if (argc < 5 || argc > 6 || parse_action(argv[4], &action) < 0) {
		fprintf(stderr, "usage: mount_overlay SOURCE UPPER|- MOUNTPOINT "
				"preserve|discard|commit|commit-atomic [FILE]\n");
		return 2;
	}
	cfg = prismfs_config_new();
	if (!cfg) {
		fprintf(stderr, "mount_overlay: out of memory\n");
		return 1;
	}
	r = prismfs_config_set_source(cfg, argv[1]);
	if (r == 0 && strcmp(argv[2], "-") != 0)
		r = prismfs_config_set_upper(cfg, argv[2]);
	if (r == 0)
		r = prismfs_mount(cfg, argv[3], &m);
	prismfs_config_free(cfg);
	if (r < 0) {
		fprintf(stderr, "mount_overlay: cannot mount: %s (%s)\n", prismfs_last_error(),
			strerror(-r));
		return 1;
	}
	printf("%s\n", prismfs_mount_point(m));
	fflush(stdout);

	snprintf(path, sizeof(path), "%s/%s", prismfs_mount_point(m), file);
	f = fopen(path, "w");
	ok = f && fputs("written through prismfs\n", f) >= 0;
	if (f && fclose(f) != 0)
		ok = 0;
	if (!ok)
		perror("mount_overlay: write");

	r = prismfs_unmount(m, action);
	if (r < 0) {
		fprintf(stderr, "mount_overlay: cannot unmount: %s (%s)\n", prismfs_last_error(),
			strerror(-r));
		return 1;
	}
	return ok ? 0 : 1;
}
