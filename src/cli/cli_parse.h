/* cli_parse: what the parts of the parser share — cli.c (the commands and
 * their dispatch), cli_mount.c (mount's options and the layer options) and
 * cli_oopts.c (the -o list). Private to them; pure like them. */
#ifndef PFS_CLI_PARSE_H
#define PFS_CLI_PARSE_H

#include "cli/cli.h"

#include <stdbool.h>
#include <stddef.h>

/* The one-line reason for bad usage, into err. */
void pfs_cli_seterr(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Append dir to the array *arr of *n; 0 or -ENOMEM. */
int pfs_cli_push_dir(const char ***arr, size_t *n, const char *dir);

/* arg is --name=value or --name (value in the next argument, *i moved
 * past it): the value, or NULL if it is missing. *matched says whether
 * arg is name's at all. */
const char *pfs_cli_optval(int argc, char **argv, int *i, const char *arg, const char *name,
			   bool *matched);

/* --whiteout, whiteout=: the form named v (what: the option, for the
 * reason). 0 or -EINVAL. */
int pfs_cli_set_whiteout(struct pfs_config *cfg, const char *v, const char *what, char *err,
			 size_t errlen);

/* How an option of mount's table takes its value. */
enum pfs_opt_kind {
	PFS_OPT_VALUE,  /* --name VALUE, --name=VALUE, -o key=VALUE */
	PFS_OPT_FLAG,   /* --name, -o key */
	PFS_OPT_ON_OFF, /* a flag, or with on|off (--name [on|off], -o key[=on|off]) */
};

/* The kind (enum pfs_opt_kind) of mount's option name ("--long"), or -1
 * when mount has none by that name (PassthroughFS's spellings aside): the
 * C API's keys take their values as the command line does. */
int pfs_cli_mount_opt_kind(const char *name);

/* The -o item key[=v] (klen: the key's length; v NULL without '=') as an
 * option of mount's table (cli_mount.c): 1 if it is one (applied), 0 if
 * not, or -EINVAL/-ENOMEM. */
int pfs_cli_mount_key(struct pfs_config *cfg, const char *key, size_t klen, const char *v,
		      char *err, size_t errlen);

/* mount's arguments from argv[start]; compat: PassthroughFS's spelling,
 * --mountpoint M --target T --mapping_file F, instead of positional
 * SOURCE MOUNTPOINT. 0 or -EINVAL/-ENOMEM, as pfs_cli_parse. */
int pfs_cli_parse_mount(int argc, char **argv, int start, bool compat, struct pfs_config *cfg,
			char *err, size_t errlen);

/* cli_mount_check.c: mount's options once every argument is read — the
 * combinations refused, the defaults that depend on other options, the
 * layers folded together (pfs_cli_finish_layers). 0 or -EINVAL/-ENOMEM. */
int pfs_cli_finish_mount(struct pfs_config *cfg, char *err, size_t errlen);

/* --default-upper: cfg->upper becomes SOURCE_upper (a string cfg owns).
 * 0 or -EINVAL. */
int pfs_cli_default_upper(struct pfs_config *cfg, char *err, size_t errlen);

/* cli_mount_layers.c: the layer options' setters (an entry of mount's
 * option table each: 0 or -EINVAL/-ENOMEM), their folding together once
 * every argument is read, and whether a word has a '/'. */
int pfs_cli_opt_upper(struct pfs_config *cfg, const char *v, const char *what, char *err,
		      size_t errlen);
int pfs_cli_opt_work(struct pfs_config *cfg, const char *v, const char *what, char *err,
		     size_t errlen);
int pfs_cli_opt_lower(struct pfs_config *cfg, const char *v, const char *what, char *err,
		      size_t errlen);
int pfs_cli_opt_data_lower(struct pfs_config *cfg, const char *v, const char *what, char *err,
			  size_t errlen);
int pfs_cli_opt_whiteout(struct pfs_config *cfg, const char *v, const char *what, char *err,
			 size_t errlen);
int pfs_cli_opt_default_upper(struct pfs_config *cfg, const char *v, const char *what,
			      char *err, size_t errlen);
int pfs_cli_opt_new_mountpoint(struct pfs_config *cfg, const char *v, const char *what,
			       char *err, size_t errlen);
int pfs_cli_opt_on_unmount(struct pfs_config *cfg, const char *v, const char *what, char *err,
			   size_t errlen);
int pfs_cli_finish_layers(struct pfs_config *cfg, char *err, size_t errlen);
bool pfs_cli_has_slash(const char *s);

/* cli_idmap.c: --uidmapping/uidmapping=, --gidmapping/gidmapping= (entries
 * of mount's option table: 0 or -EINVAL). */
int pfs_cli_opt_uidmapping(struct pfs_config *cfg, const char *v, const char *what, char *err,
			   size_t errlen);
int pfs_cli_opt_gidmapping(struct pfs_config *cfg, const char *v, const char *what, char *err,
			   size_t errlen);

#endif
