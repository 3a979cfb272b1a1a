"""The embedded FalkorDB: one private, socket-only redis-server per data folder, durable across crashes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from workbench.graphrag import falkor
from workbench.graphrag.falkor import MAX_UNIX_PATH, EmbeddedFalkor, FalkorError

REPO = Path(__file__).resolve().parents[2]

# A "second process": joins (or starts) the folder's server and prints what it saw.
OTHER = """
import json, sys
from pathlib import Path
from workbench.graphrag.falkor import EmbeddedFalkor
emb = EmbeddedFalkor(Path(sys.argv[1]))
emb.ensure()
print(json.dumps({"pid": emb.pid, "owned": emb.owned}))
"""


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., EmbeddedFalkor]]:
    """EmbeddedFalkor factory; at teardown every folder's server is stopped, whoever started it."""
    made: list[EmbeddedFalkor] = []

    def factory(folder: Path | None = None, **kwargs) -> EmbeddedFalkor:
        emb = EmbeddedFalkor(folder or tmp_path / "graph", **kwargs)
        made.append(emb)
        return emb

    yield factory
    for emb in made:
        EmbeddedFalkor(emb.folder).stop()


def other_process(folder: Path, code: str = OTHER, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def result(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def values(emb: EmbeddedFalkor, graph: str = "g") -> list[int]:
    return [row[0] for row in emb.client().select_graph(graph).query("MATCH (n:N) RETURN n.v ORDER BY n.v").result_set]


def test_query_then_stop_and_start_keeps_the_data(make):
    emb = make()
    emb.start()
    assert emb.alive() and emb.owned and emb.pid is not None
    assert (emb.folder / "falkordb.pid").read_text().strip() == str(emb.pid)

    assert emb.client().select_graph("g").query("CREATE (:N {v: 1})").nodes_created == 1
    assert values(emb) == [1]

    first = emb.pid
    emb.stop()
    assert not emb.alive() and emb.pid is None
    assert not _pid_alive(first)
    assert not (emb.folder / "falkordb.pid").exists()
    assert (emb.folder / "appendonlydir").is_dir() and (emb.folder / "dump.rdb").is_file()
    assert "ready to exit" in (emb.folder / "falkordb.log").read_text()

    emb.start()
    assert emb.pid != first
    assert values(emb) == [1]
    emb.stop()
    emb.stop()  # a second stop is a no-op


def test_a_sigkilled_child_is_restarted_by_ensure_and_keeps_the_last_write(make):
    emb = make()
    emb.ensure()
    emb.client().select_graph("g").query("CREATE (:N {v: 7})")
    killed = emb.pid
    os.kill(killed, signal.SIGKILL)  # right after the write: no clean shutdown, no RDB save
    deadline = time.monotonic() + 5
    while emb.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not emb.alive()
    assert not (emb.folder / "dump.rdb").exists()  # so what comes back, comes from the AOF

    emb.ensure()
    assert emb.alive() and emb.pid != killed and emb.owned
    assert (emb.folder / "falkordb.pid").read_text().strip() == str(emb.pid)
    assert values(emb) == [7]


def test_a_second_process_joins_the_live_server(make):
    emb = make()
    emb.ensure()
    seen = result(other_process(emb.folder))
    assert seen == {"pid": emb.pid, "owned": False}
    assert emb.alive()  # the joiner exiting leaves the server up


def test_a_server_left_by_another_process_is_joined_not_duplicated(make, tmp_path):
    folder = tmp_path / "graph"
    seen = result(other_process(folder))  # starts it, exits without stopping it (no atexit for plain objects)
    assert seen["owned"] is True
    emb = make(folder)
    emb.ensure()
    assert emb.pid == seen["pid"] and not emb.owned
    emb.client().select_graph("g").query("CREATE (:N {v: 2})")
    assert values(emb) == [2]


def test_racing_processes_and_threads_start_one_server(make, tmp_path):
    folder = tmp_path / "graph"
    procs = [other_process(folder) for _ in range(2)]
    embs = [make(folder), make(folder)]
    errors: list[BaseException] = []

    def ensure(emb: EmbeddedFalkor) -> None:
        try:
            emb.ensure()
        except BaseException as exc:  # a thread's exception would otherwise only be a warning
            errors.append(exc)

    threads = [threading.Thread(target=ensure, args=(embs[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    pids = {result(p)["pid"] for p in procs} | {e.pid for e in embs}
    assert len(pids) == 1
    assert _redis_servers_for(folder) == pids


def test_socket_is_private_and_no_tcp_port_is_open(make):
    emb = make()
    emb.ensure()
    sock = os.stat(emb.socket_path)
    assert stat.S_ISSOCK(sock.st_mode)
    assert stat.S_IMODE(sock.st_mode) & 0o077 == 0
    assert emb.socket_path.parent == emb.folder
    assert stat.S_IMODE(os.stat(emb.folder).st_mode) == 0o700

    conn = emb.client().connection
    assert conn.config_get("port") == {"port": "0"}
    assert conn.config_get("tls-port") == {"tls-port": "0"}
    assert conn.config_get("appendonly") == {"appendonly": "yes"}
    assert conn.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert conn.config_get("save")["save"] != ""

    inodes = _socket_inodes(emb.pid)
    assert inodes  # it does hold sockets (the Unix one at least)
    assert not inodes & _tcp_listen_inodes()


def test_data_folder_is_made_private(tmp_path, make):
    folder = tmp_path / "graph"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    make(folder)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700


def test_the_child_has_its_own_session_and_no_stdin(make):
    emb = make()
    emb.ensure()
    assert os.getsid(emb.pid) == emb.pid != os.getsid(0)
    assert os.readlink(f"/proc/{emb.pid}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{emb.pid}/fd/1") == str(emb.folder / "falkordb.log")


def test_a_stale_pid_file_is_replaced(make, tmp_path):
    folder = tmp_path / "graph"
    folder.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    for stale in (gone.pid, os.getpid()):  # a dead pid, then a live process that is no redis-server
        (folder / "falkordb.pid").write_text(f"{stale}\n")
        emb = make(folder)
        emb.ensure()
        assert emb.pid != stale and emb.alive()
        assert (folder / "falkordb.pid").read_text().strip() == str(emb.pid)
        emb.stop()


def test_a_long_folder_gets_a_short_private_socket(make, tmp_path):
    folder = tmp_path / ("deep folder " * 10) / "graph"
    assert len(os.fsencode(folder / "falkordb.sock")) > MAX_UNIX_PATH
    emb = make(folder)
    assert len(os.fsencode(emb.socket_path)) <= MAX_UNIX_PATH
    assert emb.socket_path == EmbeddedFalkor(folder).socket_path  # every process finds the same one
    emb.ensure()
    assert stat.S_IMODE(os.lstat(emb.socket_path.parent).st_mode) == 0o700
    emb.client().select_graph("g").query("CREATE (:N {v: 3})")
    assert values(emb) == [3]
    assert result(other_process(folder))["pid"] == emb.pid


def test_a_failed_start_says_why_with_the_log_tail(make, monkeypatch):
    emb = make(start_timeout=5)
    argv = emb._argv
    monkeypatch.setattr(emb, "_argv", lambda: [*argv(), "--no-such-directive", "1"])
    with pytest.raises(FalkorError, match="exited with status") as err:
        emb.ensure()
    assert "no-such-directive" in str(err.value) and "falkordb.log" in str(err.value)
    assert not (emb.folder / "falkordb.pid").exists()


def test_embedded_is_one_instance_per_folder_under_the_home(home, make, monkeypatch):
    monkeypatch.setattr(falkor, "_instances", {})
    emb = falkor.embedded()
    make(emb.folder)  # teardown stops it
    assert emb.folder == (home / "graph").resolve()
    assert emb.alive() and emb.owned
    assert falkor.embedded() is emb
    assert falkor.embedded(home / "graph") is emb


def test_embedded_stops_at_exit_only_what_its_process_started(home, make, tmp_path):
    code = ("import json; from workbench.graphrag.falkor import embedded; e = embedded(); "
            "print(json.dumps({'pid': e.pid, 'owned': e.owned}))")
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    started = result(other_process(home, code, env))
    assert started["owned"] is True
    assert not _pid_alive(started["pid"])  # its atexit stopped the server it had started

    emb = make(home / "graph")
    emb.ensure()
    joined = result(other_process(home, code, env))
    assert joined == {"pid": emb.pid, "owned": False}
    assert emb.alive()  # the joiner's atexit left it running


def test_graphiti_falkor_driver_runs_on_the_async_client(make, monkeypatch):
    monkeypatch.setenv("GRAPHITI_TELEMETRY_ENABLED", "false")
    from graphiti_core import Graphiti
    from graphiti_core.cross_encoder.client import CrossEncoderClient
    from graphiti_core.driver.falkordb_driver import FalkorDriver
    from graphiti_core.embedder.client import EmbedderClient
    from graphiti_core.llm_client.config import LLMConfig
    from graphiti_core.llm_client.openai_generic_client import OpenAIGenericClient

    class NoEmbedder(EmbedderClient):
        async def create(self, input_data):
            raise AssertionError("not called")

    class NoReranker(CrossEncoderClient):
        async def rank(self, query, passages):
            raise AssertionError("not called")

    emb = make()

    async def main() -> list[dict]:
        driver = FalkorDriver(falkor_db=emb.async_client(), database="kb_x")
        try:
            records, header, _ = await driver.execute_query("RETURN 1 AS x")
            assert header == ["x"]
            llm = OpenAIGenericClient(LLMConfig(api_key="unused", base_url="http://127.0.0.1:9/v1", model="none"))
            graphiti = Graphiti(graph_driver=driver, llm_client=llm, embedder=NoEmbedder(),
                                cross_encoder=NoReranker())
            await graphiti.build_indices_and_constraints()
            await graphiti.build_indices_and_constraints()  # again: already-built indexes are fine
            return records
        finally:
            await driver.close()

    assert asyncio.run(main()) == [{"x": 1}]
    indexes = emb.client().select_graph("kb_x").query("CALL db.indexes() YIELD label RETURN label").result_set
    assert {"Entity", "Episodic"} <= {row[0] for row in indexes}


# --- helpers that look at the OS, not at the module under test ---

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _redis_servers_for(folder: Path) -> set[int]:
    """Pids of the redis-server processes whose working directory is ``folder``."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"redis-server" in (entry / "cmdline").read_bytes() and os.readlink(entry / "cwd") == str(folder):
                pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _tcp_listen_inodes() -> set[str]:
    inodes = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    return inodes
