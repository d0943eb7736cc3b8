#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "cli.h"

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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
