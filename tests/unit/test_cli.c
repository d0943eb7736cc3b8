#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static char err[256];

static int parse(struct pfs_config *cfg, int argc, const char **argv)
{
	return pfs_cli_parse(argc, (char **)argv, cfg, err, sizeof(err));
}

#define PARSE(cfg, ...)                                                              \
	({                                                                           \
		const char *argv_[] = {"prismfs", __VA_ARGS__};                      \
		parse(cfg, (int)(sizeof(argv_) / sizeof(argv_[0])), argv_);           \
	})

static void t_commands(void **s)
{
	struct pfs_config c;

	(void)s;
	assert_int_equal(PARSE(&c, "--help"), 0);
	assert_int_equal(c.cmd, PFS_CMD_HELP);
	assert_int_equal(PARSE(&c, "--version"), 0);
	assert_int_equal(c.cmd, PFS_CMD_VERSION);
	assert_int_equal(PARSE(&c, "mount", "--help"), 0);
	assert_int_equal(c.cmd, PFS_CMD_MOUNT_HELP);
	assert_int_equal(PARSE(&c, "unmount", "/m"), 0);
	assert_int_equal(c.cmd, PFS_CMD_UNMOUNT);
	assert_string_equal(c.mountpoint, "/m");
	assert_int_equal(PARSE(&c, "status", "--json", "/m"), 0);
	assert_int_equal(c.cmd, PFS_CMD_STATUS);
	assert_true(c.json);
	pfs_config_free(&c);
}

static void t_mount_defaults(void **s)
{
	struct pfs_config c;

	(void)s;
	assert_int_equal(PARSE(&c, "mount", "/src", "/mnt"), 0);
	assert_int_equal(c.cmd, PFS_CMD_MOUNT);
	assert_string_equal(c.source, "/src");
	assert_string_equal(c.mountpoint, "/mnt");
	assert_false(c.foreground);
	assert_false(c.read_only);
	assert_true(c.default_permissions);
	assert_true(c.timeout == PFS_DEFAULT_TIMEOUT);
	assert_null(c.log_path);
	assert_null(c.fuse_opts);
	pfs_config_free(&c);
}

static void t_mount_options(void **s)
{
	struct pfs_config c;

	(void)s;
	assert_int_equal(PARSE(&c, "mount", "-f", "-o", "allow_other,max_read=65536", "-oro",
			       "--read-only", "--log=-", "--log-format", "json", "--timeout", "2.5",
			       "--threads=4", "/s", "/m"), 0);
	assert_true(c.foreground);
	assert_true(c.read_only);
	assert_true(c.allow_other);
	assert_string_equal(c.fuse_opts, "allow_other,max_read=65536,ro");
	assert_string_equal(c.log_path, "-");
	assert_int_equal(c.log_format, PFS_LOG_JSON);
	assert_true(c.timeout == 2.5);
	assert_int_equal(c.threads, 4);
	pfs_config_free(&c);

	assert_int_equal(PARSE(&c, "mount", "--volatile", "/s", "/m"), 0);
	assert_true(c.volatile_source);
	assert_true(c.timeout == 0);
	pfs_config_free(&c);

	/* default_permissions is ours to pass; it can be turned off. */
	assert_int_equal(PARSE(&c, "mount", "-o", "default_permissions", "/s", "/m"), 0);
	assert_true(c.default_permissions);
	assert_null(c.fuse_opts);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "-o", "nodefault_permissions", "/s", "/m"), 0);
	assert_false(c.default_permissions);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--no-default-permissions", "/s", "/m"), 0);
	assert_false(c.default_permissions);
	pfs_config_free(&c);
}

static void t_mount_helper_convention(void **s)
{
	struct pfs_config c;

	(void)s;
	/* mount.fuse3 runs: prismfs SOURCE MOUNTPOINT -o OPTS */
	assert_int_equal(PARSE(&c, "/s", "/m", "-o", "rw,allow_other"), 0);
	assert_int_equal(c.cmd, PFS_CMD_MOUNT);
	assert_string_equal(c.source, "/s");
	assert_string_equal(c.mountpoint, "/m");
	assert_string_equal(c.fuse_opts, "rw,allow_other");
	pfs_config_free(&c);
}

static void t_mapping(void **s)
{
	struct pfs_config c;

	(void)s;
	assert_int_equal(PARSE(&c, "mount", "--map", "/m.json", "/src", "/mnt"), 0);
	assert_string_equal(c.map_path, "/m.json");
	assert_true(c.map_max == PFS_DEFAULT_MAP_MAX);
	assert_false(c.foreground);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--map=/p", "--map-max", "1K", "/src", "/mnt"), 0);
	assert_string_equal(c.map_path, "/p");
	assert_true(c.map_max == 1024);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--map-max=2M", "/src", "/mnt"), 0);
	assert_true(c.map_max == 2u << 20);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--map-max", "0", "/src", "/mnt"), -EINVAL);
	assert_non_null(strstr(err, "--map-max"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--map-max", "12Q", "/src", "/mnt"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "/src", "/mnt", "--map"), -EINVAL);
	assert_non_null(strstr(err, "--map"));
	pfs_config_free(&c);
}

/* PassthroughFS's spelling, flags in any order; stays in the foreground. */
static void t_passthroughfs_compat(void **s)
{
	struct pfs_config c;

	(void)s;
	assert_int_equal(PARSE(&c, "--mountpoint", "/mnt", "--target", "/src", "--mapping_file",
			       "/m.json"), 0);
	assert_int_equal(c.cmd, PFS_CMD_MOUNT);
	assert_string_equal(c.mountpoint, "/mnt");
	assert_string_equal(c.source, "/src");
	assert_string_equal(c.map_path, "/m.json");
	assert_true(c.foreground);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "--mapping_file=/m.json", "--target=/src", "--mountpoint=/mnt"),
			 0);
	assert_string_equal(c.mountpoint, "/mnt");
	assert_string_equal(c.source, "/src");
	assert_string_equal(c.map_path, "/m.json");
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "--target", "/src", "--mountpoint", "/mnt"), 0);
	assert_null(c.map_path);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "--target", "/src", "--mapping_file", "/m"), -EINVAL);
	assert_non_null(strstr(err, "--mountpoint"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "--mountpoint", "/mnt"), -EINVAL);
	assert_non_null(strstr(err, "--target"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "--mountpoint", "/mnt", "--target", "/src", "extra"), -EINVAL);
	pfs_config_free(&c);
}

static void t_errors(void **s)
{
	struct pfs_config c;

	(void)s;
	assert_int_equal(PARSE(&c, "mount", "--bogus", "/s", "/m"), -EINVAL);
	assert_non_null(strstr(err, "--bogus"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "/s"), -EINVAL);
	assert_non_null(strstr(err, "MOUNTPOINT"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "/s", "/m", "/x"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--log-format", "xml", "/s", "/m"), -EINVAL);
	assert_non_null(strstr(err, "xml"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--timeout", "-3", "/s", "/m"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--threads", "0", "/s", "/m"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "-o", "a,,b", "/s", "/m"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "/s", "/m", "-o"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "--frobnicate"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "unmount"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "unmount", "--json", "/m"), -EINVAL);
	pfs_config_free(&c);
	{
		const char *argv[] = {"prismfs"};

		assert_int_equal(parse(&c, 1, argv), -EINVAL);
		pfs_config_free(&c);
	}
	/* Every message is one line. */
	assert_null(strchr(err, '\n'));
}

static void t_layers(void **s)
{
	struct pfs_config c;

	(void)s;
	assert_int_equal(PARSE(&c, "commit", "--upper", "/u", "--lower=/l"), 0);
	assert_int_equal(c.cmd, PFS_CMD_COMMIT);
	assert_string_equal(c.upper, "/u");
	assert_string_equal(c.lower, "/l");
	assert_null(c.work);
	assert_false(c.atomic);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "commit", "--atomic", "--lower", "/l", "--work", "/w", "--upper",
			       "/u"), 0);
	assert_true(c.atomic);
	assert_string_equal(c.work, "/w");
	pfs_config_free(&c);
	/* The first --lower is the top one; the others lie below it, in order. */
	assert_int_equal(PARSE(&c, "commit", "--upper", "/u", "--lower", "/l", "--lower", "/l2",
			       "--lower=/l3", "--whiteout", "file"), 0);
	assert_string_equal(c.lower, "/l");
	assert_int_equal(c.nlowers, 2);
	assert_string_equal(c.lowers[0], "/l2");
	assert_string_equal(c.lowers[1], "/l3");
	assert_int_equal(c.whiteout, PFS_WH_FILE);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "commit", "--upper", "/u", "--lower", "/l", "--whiteout", "x"),
			 -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "recover", "--lower", "/l", "--lower", "/l2"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "discard", "--upper", "/u", "--whiteout", "file"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "discard", "--upper", "/u", "--work=/w"), 0);
	assert_int_equal(c.cmd, PFS_CMD_DISCARD);
	assert_string_equal(c.upper, "/u");
	assert_string_equal(c.work, "/w");
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "recover", "--lower", "/l"), 0);
	assert_int_equal(c.cmd, PFS_CMD_RECOVER);
	assert_string_equal(c.lower, "/l");
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "commit", "--help"), 0);
	assert_int_equal(c.cmd, PFS_CMD_LAYERS_HELP);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "recover", "-h"), 0);
	assert_int_equal(c.cmd, PFS_CMD_LAYERS_HELP);
	pfs_config_free(&c);
}

static void t_layers_errors(void **s)
{
	struct pfs_config c;

	(void)s;
	assert_int_equal(PARSE(&c, "commit", "--upper", "/u"), -EINVAL);
	assert_non_null(strstr(err, "--lower"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "commit", "--lower", "/l"), -EINVAL);
	assert_non_null(strstr(err, "--upper"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "commit", "--upper"), -EINVAL);
	assert_non_null(strstr(err, "--upper"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "commit", "--upper=", "--lower", "/l"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "commit", "--upper", "/u", "--upper", "/v", "--lower", "/l"),
			 -EINVAL);
	assert_non_null(strstr(err, "twice"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "commit", "/u", "/l"), -EINVAL);
	assert_non_null(strstr(err, "/u"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "commit", "--upper", "/u", "--lower", "/l", "--bogus"), -EINVAL);
	assert_non_null(strstr(err, "--bogus"));
	pfs_config_free(&c);
	/* Each command takes only its own options. */
	assert_int_equal(PARSE(&c, "discard", "--upper", "/u", "--atomic"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "discard", "--upper", "/u", "--lower", "/l"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "discard"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "recover", "--upper", "/u", "--lower", "/l"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "recover"), -EINVAL);
	assert_non_null(strstr(err, "--lower"));
	assert_null(strchr(err, '\n'));
	pfs_config_free(&c);
}

static void t_mount_layers(void **s)
{
	struct pfs_config c;

	(void)s;
	assert_int_equal(PARSE(&c, "mount", "/s", "/m"), 0);
	assert_null(c.upper);
	assert_int_equal(c.action, PFS_ACT_NONE);
	assert_int_equal(c.nlowers, 0);
	pfs_config_free(&c);

	/* --lower in order, below SOURCE; preserve is the default action. */
	assert_int_equal(PARSE(&c, "mount", "--upper", "/u", "--lower", "/l1", "--work=/w",
			       "--lower=/l2", "/s", "/m"), 0);
	assert_string_equal(c.upper, "/u");
	assert_string_equal(c.work, "/w");
	assert_string_equal(c.source, "/s");
	assert_int_equal(c.nlowers, 2);
	assert_string_equal(c.lowers[0], "/l1");
	assert_string_equal(c.lowers[1], "/l2");
	assert_int_equal(c.whiteout, PFS_WH_AUTO);
	assert_int_equal(c.action, PFS_ACT_PRESERVE);
	pfs_config_free(&c);

	assert_int_equal(PARSE(&c, "mount", "--upper=/u", "--whiteout", "file", "--on-unmount",
			       "commit-atomic", "/s", "/m"), 0);
	assert_int_equal(c.whiteout, PFS_WH_FILE);
	assert_int_equal(c.action, PFS_ACT_COMMIT_ATOMIC);
	assert_null(c.work);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--upper=/u", "--whiteout=chardev",
			       "--on-unmount=discard", "/s", "/m"), 0);
	assert_int_equal(c.whiteout, PFS_WH_CHARDEV);
	assert_int_equal(c.action, PFS_ACT_DISCARD);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--upper=/u", "--on-unmount", "commit", "/s", "/m"), 0);
	assert_int_equal(c.action, PFS_ACT_COMMIT);
	pfs_config_free(&c);
}

static void t_mount_layers_errors(void **s)
{
	struct pfs_config c;

	(void)s;
	/* Every layer option needs an upper, and says which one it was. */
	assert_int_equal(PARSE(&c, "mount", "--work", "/w", "/s", "/m"), -EINVAL);
	assert_non_null(strstr(err, "--work"));
	assert_non_null(strstr(err, "--upper"));
	pfs_config_free(&c);
	/* Lowers without an upper: a read-only merge of them (the kernel's
	 * lowerdir=A:B alone), but none of the upper's options. */
	assert_int_equal(PARSE(&c, "mount", "--lower", "/l", "/s", "/m"), 0);
	assert_true(c.read_only);
	assert_null(c.upper);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--lower", "/l", "--work", "/w", "/s", "/m"),
			 -EINVAL);
	assert_non_null(strstr(err, "--work"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "-o", "lowerdir=/a:/b,on_unmount=commit", "/m"),
			 -EINVAL);
	assert_non_null(strstr(err, "on_unmount="));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "-o", "lowerdir=/a:/b,whiteout=file", "/m"), -EINVAL);
	assert_non_null(strstr(err, "whiteout="));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "-o", "lowerdir=/a", "none", "/m"), -EINVAL);
	assert_non_null(strstr(err, "lowerdir=A:B"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--whiteout", "auto", "/s", "/m"), -EINVAL);
	assert_non_null(strstr(err, "--whiteout"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--on-unmount", "commit", "/s", "/m"), -EINVAL);
	assert_non_null(strstr(err, "--on-unmount"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "-o", "lowerdir=/a:/b", "none", "/m"), 0);
	assert_string_equal(c.source, "/a");
	assert_int_equal(c.nlowers, 1);
	assert_true(c.read_only);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "-o", "workdir=/w", "/s", "/m"), -EINVAL);
	assert_non_null(strstr(err, "workdir="));
	pfs_config_free(&c);

	assert_int_equal(PARSE(&c, "mount", "--upper", "/u", "--whiteout", "dev", "/s", "/m"),
			 -EINVAL);
	assert_non_null(strstr(err, "not dev"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--upper", "/u", "--on-unmount", "keep", "/s", "/m"),
			 -EINVAL);
	assert_non_null(strstr(err, "not keep"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--upper", "/u", "--on-unmount", "none", "/s", "/m"),
			 -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--upper", "/u", "/s", "/m", "--lower"), -EINVAL);
	assert_non_null(strstr(err, "--lower"));
	pfs_config_free(&c);
	/* --upper takes a value: /s is the upper, /m the only positional. */
	assert_int_equal(PARSE(&c, "mount", "--upper", "/s", "/m"), -EINVAL);
	assert_non_null(strstr(err, "MOUNTPOINT"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--upper", "/u", "--upper", "/v", "/s", "/m"),
			 -EINVAL);
	assert_non_null(strstr(err, "twice"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "--upper", "/u", "-o", "upperdir=/v", "/s", "/m"),
			 -EINVAL);
	assert_non_null(strstr(err, "twice"));
	pfs_config_free(&c);
	/* Nowhere to write. */
	assert_int_equal(PARSE(&c, "mount", "--upper", "/u", "--read-only", "/s", "/m"), -EINVAL);
	assert_non_null(strstr(err, "--read-only"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "-o", "ro,upperdir=/u", "/s", "/m"), -EINVAL);
	assert_non_null(strstr(err, "-o ro"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "-o", "ro,upperdir=/u,rw", "/s", "/m"), 0);
	pfs_config_free(&c);
	assert_null(strchr(err, '\n'));
}

/* The kernel overlayfs spelling, as mount(8) and mount.fuse3 pass it. */
static void t_mount_kernel_spelling(void **s)
{
	struct pfs_config c;

	(void)s;
	/* mount.fuse3: prismfs none MNT -o rw,...,dev,suid */
	assert_int_equal(PARSE(&c, "none", "/m", "-o",
			       "rw,lowerdir=/l1:/l2:/l3,upperdir=/u,workdir=/w,dev,suid"), 0);
	assert_int_equal(c.cmd, PFS_CMD_MOUNT);
	assert_string_equal(c.source, "/l1");
	assert_string_equal(c.mountpoint, "/m");
	assert_int_equal(c.nlowers, 2);
	assert_string_equal(c.lowers[0], "/l2");
	assert_string_equal(c.lowers[1], "/l3");
	assert_string_equal(c.upper, "/u");
	assert_string_equal(c.work, "/w");
	assert_int_equal(c.action, PFS_ACT_PRESERVE);
	/* Layer options never reach libfuse. */
	assert_string_equal(c.fuse_opts, "rw,dev,suid");
	assert_false(c.mount_ro);
	pfs_config_free(&c);

	/* -o anywhere, several of them; SOURCE may repeat lowerdir's first. */
	assert_int_equal(PARSE(&c, "mount", "-o", "upperdir=/u", "/l1/", "/m", "-o",
			       "lowerdir=/l1,whiteout=file,on_unmount=commit"), 0);
	assert_string_equal(c.source, "/l1");
	assert_int_equal(c.nlowers, 0);
	assert_null(c.fuse_opts);
	assert_int_equal(c.whiteout, PFS_WH_FILE);
	assert_int_equal(c.action, PFS_ACT_COMMIT);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "-ooverlay", "/m"), -EINVAL); /* one positional */
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "overlay", "/m", "-o", "lowerdir=/l,upperdir=/u"), 0);
	assert_string_equal(c.source, "/l");
	pfs_config_free(&c);

	/* upperdir= alone: SOURCE is the lower, as with --upper. */
	assert_int_equal(PARSE(&c, "/s", "/m", "-o", "upperdir=/u"), 0);
	assert_string_equal(c.source, "/s");
	assert_string_equal(c.upper, "/u");
	pfs_config_free(&c);

	/* Escapes: '\:' inside a lowerdir name, '\,' inside any value. */
	assert_int_equal(PARSE(&c, "none", "/m", "-o",
			       "lowerdir=/a\\:b:/c\\,d,upperdir=/u\\,v,fsname=x\\,y"), 0);
	assert_string_equal(c.source, "/a:b");
	assert_int_equal(c.nlowers, 1);
	assert_string_equal(c.lowers[0], "/c,d");
	assert_string_equal(c.upper, "/u,v");
	assert_string_equal(c.fuse_opts, "fsname=x\\,y"); /* libfuse unescapes its own */
	pfs_config_free(&c);
}

static void t_mount_kernel_spelling_errors(void **s)
{
	struct pfs_config c;

	(void)s;
	assert_int_equal(PARSE(&c, "/s", "/m", "-o", "lowerdir=/l1,upperdir=/u"), -EINVAL);
	assert_non_null(strstr(err, "none"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "none", "/m", "-o", "lowerdir=/l1,upperdir=/u", "--lower",
			       "/l2"), -EINVAL);
	assert_non_null(strstr(err, "not both"));
	pfs_config_free(&c);
	/* The kernel's data-only layers: after the first "::", each after a
	 * "::", below every regular one; --data-lower the same. */
	assert_int_equal(PARSE(&c, "none", "/m", "-o",
			       "lowerdir=/l1:/l2::/d1::/d2,upperdir=/u"), 0);
	assert_string_equal(c.source, "/l1");
	assert_int_equal(c.nlowers, 3);
	assert_int_equal(c.ndata, 2);
	assert_string_equal(c.lowers[0], "/l2");
	assert_string_equal(c.lowers[1], "/d1");
	assert_string_equal(c.lowers[2], "/d2");
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "/s", "/m", "--data-lower", "/d1", "--lower", "/l2"), 0);
	assert_int_equal(c.nlowers, 2);
	assert_int_equal(c.ndata, 1);
	assert_string_equal(c.lowers[0], "/l2");
	assert_string_equal(c.lowers[1], "/d1");
	pfs_config_free(&c);
	/* ... but no regular layer after them (the kernel refuses it), and
	 * not both spellings. */
	assert_int_equal(PARSE(&c, "none", "/m", "-o", "lowerdir=/l1::/d1:/l2"), -EINVAL);
	assert_non_null(strstr(err, "data-only"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "none", "/m", "-o", "lowerdir=/l1::/d1", "--data-lower",
			       "/d2"), -EINVAL);
	assert_non_null(strstr(err, "not both"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "none", "/m", "-o", "lowerdir=/l1:,upperdir=/u"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "none", "/m", "-o", "lowerdir=,upperdir=/u"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "none", "/m", "-o", "lowerdir=/a,lowerdir=/b,upperdir=/u"),
			 -EINVAL);
	assert_non_null(strstr(err, "twice"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "none", "/m", "-o", "lowerdir=/a,upperdir="), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "none", "/m", "-o", "lowerdir=/a,upperdir=/u,on_unmount=x"),
			 -EINVAL);
	assert_non_null(strstr(err, "on_unmount="));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "none", "/m", "-o", "lowerdir=/a,upperdir=/u,"), -EINVAL);
	pfs_config_free(&c);
	assert_null(strchr(err, '\n'));
}

/* What mount(8), mount.fuse3 and fstab lines add is accepted: steering
 * options dropped, mount flags passed on. */
static void t_mount8_options(void **s)
{
	struct pfs_config c;

	(void)s;
	assert_int_equal(PARSE(&c, "none", "/m", "-o",
			       "defaults,rw,nofail,noauto,auto,user,users,nouser,owner,group,"
			       "_netdev,x-systemd.requires=/x,comment=hi,relatime,dev,suid,exec,"
			       "nosuid,nodev,noexec,lowerdir=/l,upperdir=/u"), 0);
	assert_string_equal(c.fuse_opts, "rw,dev,suid,exec,nosuid,nodev,noexec");
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "/s", "/m", "-o", "ro"), 0);
	assert_true(c.mount_ro);
	assert_string_equal(c.fuse_opts, "ro");
	pfs_config_free(&c);
}

static void t_unmount_action(void **s)
{
	struct pfs_config c;
	static const struct {
		const char *name;
		enum pfs_action a;
	} names[] = {{"preserve", PFS_ACT_PRESERVE}, {"discard", PFS_ACT_DISCARD},
		     {"commit", PFS_ACT_COMMIT}, {"commit-atomic", PFS_ACT_COMMIT_ATOMIC}};

	(void)s;
	assert_int_equal(PARSE(&c, "unmount", "/m"), 0);
	assert_int_equal(c.action, PFS_ACT_NONE);
	pfs_config_free(&c);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		enum pfs_action a = PFS_ACT_NONE;

		assert_int_equal(PARSE(&c, "unmount", "/m", "--action", names[i].name), 0);
		assert_int_equal(c.action, names[i].a);
		assert_string_equal(c.mountpoint, "/m");
		pfs_config_free(&c);
		assert_int_equal(pfs_action_parse(names[i].name, &a), 0);
		assert_int_equal(a, names[i].a);
		assert_string_equal(pfs_action_name(a), names[i].name);
	}
	assert_int_equal(PARSE(&c, "umount", "--action=discard", "/m"), 0);
	assert_int_equal(c.action, PFS_ACT_DISCARD);
	assert_string_equal(c.mountpoint, "/m");
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "unmount", "/m", "--action", "later"), -EINVAL);
	assert_non_null(strstr(err, "later"));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "unmount", "/m", "--action"), -EINVAL);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "status", "/m", "--action", "commit"), -EINVAL);
	pfs_config_free(&c);
	assert_string_equal(pfs_whiteout_name(PFS_WH_FILE), "file");
}

/* help CMD and CMD --help: the same text, CMD's own. */
static void t_help_per_command(void **s)
{
	static const struct {
		const char *cmd;
		enum pfs_cmd help;
		const char *usage;
	} topics[] = {
		{"mount", PFS_CMD_MOUNT_HELP, pfs_mount_usage},
		{"unmount", PFS_CMD_UNMOUNT_HELP, pfs_unmount_usage},
		{"umount", PFS_CMD_UNMOUNT_HELP, pfs_unmount_usage},
		{"status", PFS_CMD_STATUS_HELP, pfs_status_usage},
		{"commit", PFS_CMD_LAYERS_HELP, pfs_layers_usage},
		{"discard", PFS_CMD_LAYERS_HELP, pfs_layers_usage},
		{"recover", PFS_CMD_LAYERS_HELP, pfs_layers_usage},
	};
	struct pfs_config c;

	(void)s;
	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
		assert_int_equal(PARSE(&c, "help", topics[i].cmd), 0);
		assert_int_equal(c.cmd, topics[i].help);
		assert_ptr_equal(c.usage, topics[i].usage);
		pfs_config_free(&c);
		assert_int_equal(PARSE(&c, topics[i].cmd, "--help"), 0);
		assert_int_equal(c.cmd, topics[i].help);
		assert_ptr_equal(c.usage, topics[i].usage);
		pfs_config_free(&c);
	}
	assert_int_equal(PARSE(&c, "help"), 0);
	assert_int_equal(c.cmd, PFS_CMD_HELP);
	assert_ptr_equal(c.usage, pfs_usage);
	assert_int_equal(PARSE(&c, "help", "frobnicate"), -EINVAL);
	assert_non_null(strstr(err, "unknown command 'frobnicate'"));
	assert_int_equal(PARSE(&c, "help", "mount", "extra"), -EINVAL);
}

/* The mount(8) helper form is told from a mistyped command by its form:
 * a path, or -o given; any other first word is left to the caller, which
 * checks whether it exists. */
static void t_unknown_command(void **s)
{
	struct pfs_config c;

	(void)s;
	assert_int_equal(PARSE(&c, "snapshot", "mnt"), 0);
	assert_string_equal(c.maybe_cmd, "snapshot");
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "snapshot"), -EINVAL);
	assert_string_equal(c.maybe_cmd, "snapshot");
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "./src", "mnt"), 0);
	assert_null(c.maybe_cmd);
	assert_int_equal(PARSE(&c, "/src", "/mnt"), 0);
	assert_null(c.maybe_cmd);
	assert_int_equal(PARSE(&c, "..", "mnt"), 0);
	assert_null(c.maybe_cmd);
	assert_int_equal(PARSE(&c, "src", "mnt", "-o", "ro"), 0);
	assert_null(c.maybe_cmd);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "none", "mnt", "-olowerdir=/l,upperdir=/u"), 0);
	assert_null(c.maybe_cmd);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "snapshot", "mnt"), 0);
	assert_null(c.maybe_cmd);
	pfs_config_free(&c);
}

static void t_debug_and_generic_flags(void **s)
{
	static const char *const flags[] = {"nodiratime", "diratime", "strictatime",
					    "nostrictatime", "lazytime", "nolazytime",
					    "norelatime", "relatime", "nosymfollow", "symfollow"};
	struct pfs_config c;

	(void)s;
	assert_int_equal(PARSE(&c, "mount", "-d", "/s", "/m"), 0);
	assert_true(c.debug);
	assert_true(c.foreground);
	assert_string_equal(c.fuse_opts, "debug");
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "-o", "allow_other,debug", "/s", "/m"), 0);
	assert_true(c.debug);
	assert_true(c.foreground);
	pfs_config_free(&c);
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		assert_int_equal(PARSE(&c, "mount", "-o", flags[i], "/s", "/m"), 0);
		/* nothing libfuse 3.14 would refuse reaches it */
		assert_null(c.fuse_opts);
		pfs_config_free(&c);
	}
	assert_int_equal(PARSE(&c, "mount", "-o", "nosymfollow", "/s", "/m"), 0);
	assert_true(c.nosymfollow);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "-o", "nosymfollow,symfollow", "/s", "/m"), 0);
	assert_false(c.nosymfollow);
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "-o", "noatime,nodiratime", "/s", "/m"), 0);
	assert_string_equal(c.fuse_opts, "noatime");
	pfs_config_free(&c);
}

static void t_upperdir_needs_lowerdir(void **s)
{
	struct pfs_config c;

	(void)s;
	assert_int_equal(PARSE(&c, "mount", "-o", "upperdir=/u", "none", "/m"), -EINVAL);
	assert_non_null(strstr(err, "lowerdir="));
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "none", "/m", "-o", "upperdir=/u,workdir=/w"), -EINVAL);
	assert_non_null(strstr(err, "lowerdir="));
	pfs_config_free(&c);
	/* SOURCE is the lower: no lowerdir= needed */
	assert_int_equal(PARSE(&c, "mount", "-o", "upperdir=/u", "/s", "/m"), 0);
	assert_true(c.upper_from_opt);
	assert_string_equal(c.source, "/s");
	pfs_config_free(&c);
	assert_int_equal(PARSE(&c, "mount", "-o", "lowerdir=/l,upperdir=/u", "none", "/m"), 0);
	assert_string_equal(c.source, "/l");
	pfs_config_free(&c);
}

/* Every option of mount's table as -o key[=value] sets what its --long
 * form sets; the kernel overlay options are accepted where they mean what
 * prismfs does and refused, naming themselves, where not. */
static void t_o_keys(void **s)
{
	struct pfs_config a, b;

	(void)s;
	assert_int_equal(PARSE(&a, "mount", "--log", "/l", "--log-format", "json", "--timeout",
			       "5", "--passthrough", "off", "--uring", "off", "--threads", "3",
			       "--map", "/t.json", "--map-max", "1M", "--node-fds", "64",
			       "--read-only", "--no-default-permissions", "/s", "/m"), 0);
	assert_int_equal(PARSE(&b, "/s", "/m", "-o", "log=/l,log_format=json,timeout=5",
			       "-o", "passthrough=off,uring=off,threads=3,map=/t.json,map_max=1M",
			       "-o", "node_fds=64,read_only,nodefault_permissions"), 0);
	assert_string_equal(a.log_path, b.log_path);
	assert_int_equal(a.log_format, b.log_format);
	assert_true(a.timeout == b.timeout);
	assert_int_equal(a.passthrough, b.passthrough);
	assert_int_equal(a.uring, b.uring);
	assert_int_equal(a.threads, b.threads);
	assert_string_equal(a.map_path, b.map_path);
	assert_int_equal(a.map_max, b.map_max);
	assert_int_equal(a.node_fds, b.node_fds);
	assert_true(b.read_only && !b.default_permissions);
	assert_null(b.fuse_opts);
	pfs_config_free(&a);
	pfs_config_free(&b);

	assert_int_equal(PARSE(&b, "/s", "/m", "-o", "volatile"), 0);
	assert_true(b.volatile_source);
	assert_true(b.timeout == 0);
	pfs_config_free(&b);
	assert_int_equal(PARSE(&b, "none", "/m", "-o", "mirror=/d,cache_size=8M,"
			       "cache_max_dirty=2M,lazy_load=off,write_back=0.5"), 0);
	assert_string_equal(b.mirror, "/d");
	assert_string_equal(b.mountpoint, "/m");
	assert_int_equal(b.cache_size, 8 << 20);
	assert_int_equal(b.cache_max_dirty, 2 << 20);
	assert_false(b.lazy_load);
	assert_true(b.write_back == 0.5);
	pfs_config_free(&b);
	assert_int_equal(PARSE(&b, "none", "/m", "-o", "lowerdir=/l,upperdir=/u,whiteout=file,"
			       "on_unmount=discard,userxattr,index=off,metacopy=off,"
			       "redirect_dir=nofollow,xino=auto,uuid=null,nfs_export=off"), 0);
	assert_true(b.userxattr);
	assert_int_equal(b.redirect, PFS_REDIR_OFF);
	assert_int_equal(b.whiteout, PFS_WH_FILE);
	assert_int_equal(b.action, PFS_ACT_DISCARD);
	assert_null(b.fuse_opts);
	pfs_config_free(&b);
	/* redirect_dir= as the kernel's; the last one given counts. */
	assert_int_equal(PARSE(&b, "none", "/m", "-o", "lowerdir=/l,upperdir=/u,redirect_dir=on"), 0);
	assert_int_equal(b.redirect, PFS_REDIR_ON);
	pfs_config_free(&b);
	assert_int_equal(PARSE(&b, "none", "/m", "-o",
			       "lowerdir=/l,upperdir=/u,redirect_dir=on,redirect_dir=follow"), 0);
	assert_int_equal(b.redirect, PFS_REDIR_FOLLOW);
	pfs_config_free(&b);

	/* metacopy=on turns redirect_dir=on on, as the kernel's. */
	assert_int_equal(PARSE(&b, "none", "/m", "-o", "lowerdir=/l,upperdir=/u,metacopy=on"), 0);
	assert_true(b.metacopy);
	assert_int_equal(b.redirect, PFS_REDIR_ON);
	pfs_config_free(&b);

	/* fuse-overlayfs's synopsis: options first, MOUNTPOINT alone. */
	assert_int_equal(PARSE(&b, "-f", "-o", "lowerdir=/l1:/l2,upperdir=/u,workdir=/w", "/m"),
			 0);
	assert_int_equal(b.cmd, PFS_CMD_MOUNT);
	assert_string_equal(b.source, "/l1");
	assert_string_equal(b.mountpoint, "/m");
	assert_true(b.foreground);
	pfs_config_free(&b);

	static const char *const bad[][2] = {
		{"redirect_dir=sometimes", "redirect_dir=sometimes"}, {"index=on", "index=on"},
		{"metacopy=on,redirect_dir=off", "-o metacopy=on needs redirect_dir=on"},
		{"redirect_dir=follow,metacopy=on", "-o metacopy=on needs redirect_dir=on"},
		{"map=/t,metacopy=on", "-o metacopy=on cannot be used with --map"},
		{"metacopy=yes", "metacopy= takes on, off"},
		{"uuid=on", "uuid=on"}, {"xino=x", "xino=x"},
		{"log_format=xml", "log_format= must be text or json, not xml"},
		{"timeout", "-o timeout needs a value"}, {"read_only=1", "read_only takes no value"},
		{"threads=0", "threads="}, {"lazy_load=maybe", "lazy_load takes on or off"},
		{"map=/t,redirect_dir=follow", "-o redirect_dir=follow cannot be used with --map"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char o[128];

		snprintf(o, sizeof(o), "lowerdir=/l,upperdir=/u,%s", bad[i][0]);
		assert_int_equal(PARSE(&b, "none", "/m", "-o", o), -EINVAL);
		assert_non_null(strstr(err, bad[i][1]));
		assert_null(strchr(err, '\''));
		pfs_config_free(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_commands),
		cmocka_unit_test(t_mount_defaults),
		cmocka_unit_test(t_mount_options),
		cmocka_unit_test(t_mount_helper_convention),
		cmocka_unit_test(t_errors),
		cmocka_unit_test(t_mapping),
		cmocka_unit_test(t_passthroughfs_compat),
		cmocka_unit_test(t_layers),
		cmocka_unit_test(t_layers_errors),
		cmocka_unit_test(t_mount_layers),
		cmocka_unit_test(t_mount_layers_errors),
		cmocka_unit_test(t_mount_kernel_spelling),
		cmocka_unit_test(t_mount_kernel_spelling_errors),
		cmocka_unit_test(t_mount8_options),
		cmocka_unit_test(t_unmount_action),
		cmocka_unit_test(t_help_per_command),
		cmocka_unit_test(t_unknown_command),
		cmocka_unit_test(t_debug_and_generic_flags),
		cmocka_unit_test(t_upperdir_needs_lowerdir),
		cmocka_unit_test(t_o_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
