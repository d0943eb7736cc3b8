"""Real WebDAV servers for the remote mirror's tests: Apache mod_dav,
nginx + dav-ext and rclone serve webdav, each started unprivileged (as nobody) on a free loopback
port, in a throw-away directory, with no system configuration read.

    with dav_server("apache") as s:
        s.url, s.root (the directory it serves), s.access_log()

The context manager always stops the server (by its own PID) and removes
the directory, whatever happened inside it."""

import base64
import contextlib
import grp
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

KINDS = ("apache", "nginx", "rclone")


def free_port():
    """A port nothing listens on now (none of these servers can bind port 0
    and tell which port it got)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _module_dir(pkg, suffix):
    out = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.endswith(suffix):
            return os.path.dirname(line)
    raise RuntimeError(f"{pkg}: no {suffix} installed (scripts/setup.sh installs it)")


APACHE_CONF = """Listen 127.0.0.1:{port}
ServerName 127.0.0.1
PidFile apache.pid
ErrorLog logs/error.log
LogLevel warn
LogFormat "%r %>s" plain
CustomLog logs/access.log plain
LoadModule mpm_event_module modules/mod_mpm_event.so
LoadModule authz_core_module modules/mod_authz_core.so
LoadModule dav_module modules/mod_dav.so
LoadModule dav_fs_module modules/mod_dav_fs.so
DocumentRoot root
DavLockDB var/DavLock
LimitRequestBody 0
<Location />
    Dav On
{access}
</Location>
"""

APACHE_AUTH = """    AuthType Basic
    AuthName prismfs
    AuthBasicProvider file
    AuthUserFile htpasswd
    Require valid-user"""
APACHE_AUTH_MODULES = """LoadModule auth_basic_module modules/mod_auth_basic.so
LoadModule authn_core_module modules/mod_authn_core.so
LoadModule authn_file_module modules/mod_authn_file.so
LoadModule authz_user_module modules/mod_authz_user.so
"""

# No create_full_put_path: a PUT under a missing parent gets RFC 4918's 409.
NGINX_CONF = """load_module modules/ngx_http_dav_ext_module.so;
worker_processes 1;
pid nginx.pid;
error_log logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format plain '$request $status';
    access_log logs/access.log plain;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root root;
        location / {{
            dav_methods PUT DELETE MKCOL COPY MOVE;
            dav_ext_methods PROPFIND OPTIONS;
            dav_access user:rw group:rw all:r;
            client_max_body_size 0;
        }}
    }}
}}
"""


class DavServer:
    def __init__(self, kind, base, port, proc):
        self.kind = kind
        self.base = base
        self.port = port
        self.proc = proc
        self.root = os.path.join(base, "root")
        self.url = f"http://127.0.0.1:{port}"

    def access_log(self):
        """The requests so far, as (method, path, status). rclone logs
        neither the status (None) nor the escaped path (the name's)."""
        if self.kind == "rclone":
            out = []
            for line in self.error_log().splitlines():
                m = re.search(r"INFO  : (.*): ([A-Z]+) from 127\.0\.0\.1:", line)
                if m:
                    out.append((m.group(2), m.group(1), None))
            return out
        try:
            with open(os.path.join(self.base, "logs", "access.log")) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            # "METHOD /escaped/path HTTP/1.1 STATUS": the path as sent has no blank.
            f = line.split(" ")
            if len(f) == 4:
                out.append((f[0], f[1], f[3]))
        return out

    def error_log(self):
        name = "stderr" if self.kind == "rclone" else os.path.join("logs", "error.log")
        try:
            with open(os.path.join(self.base, name)) as f:
                return f.read()
        except FileNotFoundError:
            return ""


def _prepare(kind, base, port, auth):
    for d in ("root", "logs", "var", "tmp"):
        os.mkdir(os.path.join(base, d))
    if kind == "rclone":
        # -v logs one line per request; a config file that does not exist
        # only earns a notice.
        return ["env", f"HOME={base}", f"RCLONE_CONFIG={base}/rclone.conf", "rclone", "serve",
                "webdav", "-v", "--addr", f"127.0.0.1:{port}", os.path.join(base, "root")]
    if kind == "apache":
        os.symlink(_module_dir("apache2-bin", "/mod_dav.so"), os.path.join(base, "modules"))
        access = "    Require all granted"
        conf = APACHE_CONF
        if auth:
            # Apache's {SHA} form: base64 of the password's SHA-1.
            user, pw = auth
            digest = base64.b64encode(hashlib.sha1(pw.encode()).digest()).decode()
            with open(os.path.join(base, "htpasswd"), "w") as f:
                f.write(f"{user}:{{SHA}}{digest}\n")
            access = APACHE_AUTH
            conf = APACHE_AUTH_MODULES + conf
        with open(os.path.join(base, "apache.conf"), "w") as f:
            f.write(conf.format(port=port, access=access))
        return ["apache2", "-d", base, "-f", "apache.conf", "-X"]
    os.symlink(_module_dir("libnginx-mod-http-dav-ext", "ngx_http_dav_ext_module.so"),
               os.path.join(base, "modules"))
    with open(os.path.join(base, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(port=port))
    # -e stderr: not the compiled-in system error log, before the config is read.
    return ["nginx", "-e", "stderr", "-p", base + "/", "-c", "nginx.conf", "-g", "daemon off;"]


def _chown_tree(path, uid, gid):
    for dirpath, dirnames, filenames in os.walk(path):
        os.lchown(dirpath, uid, gid)
        for n in dirnames + filenames:
            os.lchown(os.path.join(dirpath, n), uid, gid)


def _wait_listening(proc, port, base, limit=20.0):
    # A bound on a start that never comes, not a measurement: it only turns
    # a server that cannot start into an error instead of a hang.
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {_stderr(base)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"server did not listen on {port}: {_stderr(base)}")


def _stderr(base):
    try:
        with open(os.path.join(base, "stderr")) as f:
            return f.read()[-2000:]
    except OSError:
        return ""


@contextlib.contextmanager
def dav_server(kind, auth=None):
    """auth: (user, password) Basic authentication is required with
    (apache only)."""
    assert kind in KINDS, kind
    assert auth is None or kind == "apache", kind
    base = tempfile.mkdtemp(prefix=f"pfs-dav-{kind}-")
    proc = None
    try:
        os.chmod(base, 0o755)
        port = free_port()
        argv = _prepare(kind, base, port, auth)
        unpriv = os.geteuid() == 0
        if unpriv:
            _chown_tree(base, pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
            argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + argv
        with open(os.path.join(base, "stderr"), "w") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    start_new_session=True)
        _wait_listening(proc, port, base)
        yield DavServer(kind, base, port, proc)
    finally:
        if proc is not None and proc.poll() is None:
            # The master is the process started; nginx's worker follows it.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(base, ignore_errors=True)
